"""n-step targets with SB3's NStepReplayBuffer semantics, over SB3's own reward/done/timeout arrays.

Sum the discounted rewards up to the first done or timeout (inclusive) within ``n_steps``; the next
observation and done come from that last step; the bootstrap discount is gamma ** (steps summed).
The newest step (``pos - 1``) counts as truncated unless done, so no window runs into overwritten rows.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NStepTargets:
    returns: np.ndarray  # (batch, 1) float32
    last_steps: np.ndarray  # (batch,) step index whose next observation and done close the window
    dones: np.ndarray  # (batch, 1) float32, timeouts excluded
    discounts: np.ndarray  # (batch, 1) float32, gamma ** window length


def n_step_targets(rewards: np.ndarray, dones: np.ndarray, timeouts: np.ndarray, steps: np.ndarray,
                   env_inds: np.ndarray, *, pos: int, n_steps: int, gamma: float,
                   normalize_reward: Callable[[np.ndarray], np.ndarray]) -> NStepTargets:
    """Targets for the windows starting at ``(steps, env_inds)`` of (buffer_size, n_envs) arrays.

    :param pos: the buffer's next write position (the newest step is ``pos - 1``)
    :param n_steps: the window length
    :param gamma: the discount
    :param normalize_reward: applied to the rewards of every window (VecNormalize's, or the identity)
    """
    size = rewards.shape[0]
    newest = (pos - 1) % size
    saved = timeouts[newest].copy()
    timeouts[newest] = np.logical_or(saved, np.logical_not(dones[newest]))
    try:
        window = (steps[:, None] + np.arange(n_steps)) % size
        envs = env_inds[:, None]
        reward_seq = normalize_reward(rewards[window, envs])
        ends = np.logical_or(dones[window, envs], timeouts[window, envs])
        end = np.where(ends.any(axis=1), ends.argmax(axis=1), n_steps - 1)
        mask = np.arange(n_steps)[None, :] <= end[:, None]
        discounts = gamma ** mask.sum(axis=1, keepdims=True).astype(np.float32)
        step_discounts = gamma ** np.arange(n_steps, dtype=np.float32)[None, :]
        returns = (reward_seq * step_discounts * mask).sum(axis=1, keepdims=True)
        last = (steps + end) % size
        final_dones = dones[last, env_inds][:, None].astype(np.float32) * (1.0 - timeouts[last, env_inds][:, None])
    finally:
        timeouts[newest] = saved
    return NStepTargets(returns, last, final_dones, discounts)
