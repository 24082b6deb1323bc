"""Every default the planner, the buffers and the harness share: one home for each.

The paper's precision (m decimals per kind of algorithm, the clamp b) and what ``planner fit`` compares when not
told otherwise. stable-baselines3's buffer sizes and network widths, per algorithm, live in
:data:`planner.algorithms.ALGORITHMS`; the functions below read them.

>>> PAPER_DECIMALS["sac"], CLAMP, default_buffer_size("ppo")
(2, 127.0, 2048)
"""

from planner.algorithms import algorithm

CLAMP = 127.0  # the paper's symmetric clamp b: values outside [-b, b] saturate
PAPER_DECIMALS = {"ppo": 1, "sac": 2}  # the paper's m: PPO 1, SAC 2 (every algorithm takes its kind's)
WIDTH_RULE = "exact"  # bits per value: the exact level count, what the packed buffers allocate
FIT_ALGOS = ("ppo", "sac")  # what planner fit compares unless --algo says otherwise
SCAN_STEPS = 10_000  # observations `planner obs scan` (and --scan) collects, with random actions, seed 0


def is_on_policy(algo: str) -> bool:
    """On-policy algorithms keep a rollout of n_steps per env; the others a replay buffer."""
    return algorithm(algo).on_policy


def default_buffer_size(algo: str) -> int:
    """SB3's default: n_steps (per env) for an on-policy algorithm, the replay capacity otherwise.

    >>> default_buffer_size("a2c"), default_buffer_size("dqn")
    (5, 1000000)
    """
    return algorithm(algo).buffer_size


def default_decimals(algo: str) -> int:
    """The paper's m for ``algo``'s kind: PPO's for an on-policy algorithm (a rollout buffer), SAC's for an off-policy
    one (a replay buffer); the CLI's default and the quantized buffers'.

    >>> default_decimals("a2c"), default_decimals("td3")
    (1, 2)
    """
    return PAPER_DECIMALS["ppo" if is_on_policy(algo) else "sac"]
