"""Every default the planner, the buffers and the harness share: one home for each.

The paper's precision (m decimals per algorithm, the clamp b), stable-baselines3's buffer sizes and
network widths, and what ``planner fit`` compares when not told otherwise.

>>> PAPER_DECIMALS["sac"], CLAMP, default_buffer_size("ppo")
(2, 127.0, 2048)
"""

CLAMP = 127.0  # the paper's symmetric clamp b: values outside [-b, b] saturate
PAPER_DECIMALS = {"ppo": 1, "sac": 2, "td3": 2}  # the paper's m: PPO 1, SAC 2 (TD3 as SAC)
WIDTH_RULE = "exact"  # bits per value: the exact level count, what the packed buffers allocate
REPLAY_CAPACITY = 1_000_000  # SB3's buffer_size for off-policy algorithms
N_STEPS = 2048  # SB3's PPO n_steps (per env)
NETS = {"ppo": (64, 64), "sac": (256, 256), "td3": (400, 300)}  # SB3's MlpPolicy hidden sizes
FIT_ALGOS = ("ppo", "sac")  # what planner fit compares unless --algo says otherwise
BUFFER_DECIMALS = 2  # m of the quantized buffers and the wrapper when none is given (the paper's SAC m)


def is_on_policy(algo: str) -> bool:
    """On-policy algorithms keep a rollout of n_steps per env; the others a replay buffer."""
    return algo == "ppo"


def default_buffer_size(algo: str) -> int:
    """SB3's default: n_steps for an on-policy algorithm, the replay capacity otherwise."""
    return N_STEPS if is_on_policy(algo) else REPLAY_CAPACITY


def default_decimals(algo: str) -> int:
    """The paper's m for ``algo`` (2 for an algorithm the paper did not run)."""
    return PAPER_DECIMALS.get(algo, 2)
