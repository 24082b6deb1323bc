"""QuantizedReplayBuffer: SB3's ReplayBuffer with each observation stored once, as a k-bit packed row.

Row ``pos * n_envs + env`` holds the observation of that transition; its next observation is the
following row (``(pos + 1) % buffer_size``), written by ``add()`` unless the transition ends an episode
(done or timeout). When the next ``add()`` brings a different observation for that row (an interrupted
stream: a second ``learn()``, a loaded buffer, transitions from a dataset), the replaced codes move to the
terminal store first, so no next observation is ever replaced silently. Episode-end next
observations go to a small ring of packed rows (the terminal store). When it is full, a terminated
transition's entry is given up first (its next observation is masked by ``done`` in SAC/TD3's target),
a time limit's only to make room for another time limit;
a transition whose entry is given up falls back to the following row, as SB3's
``optimize_memory_usage`` would (``terminal_evictions`` counts them, ``timeout_evictions`` the time
limits among them: only those change a learning target).
As in SB3's ``optimize_memory_usage``, a full buffer never samples the row at ``pos``.
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from cython_core import CodeSpec, PackedRows, gather_unpack, quantize_pack
from planner.defaults import CLAMP
from planner.errors import PlannerError
from planner.layouts import default_terminal_capacity
from validation.nstep import n_step_targets
from validation.obs_spec import decode_to_tensor, flat_rows, observation_spec
from validation.persistence import PersistentBuffer

FREE = -1


def _placeholder_space(observation_space: spaces.Box) -> spaces.Box:
    """A zero-size Box: the parent constructor allocates (rows, n_envs, 0) observation arrays, 0 bytes."""
    return spaces.Box(low=0, high=0, shape=(0,), dtype=observation_space.dtype)


class QuantizedReplayBuffer(PersistentBuffer, ReplayBuffer):
    """Drop-in replay buffer for SAC/TD3 storing observations as k-bit codes (``decimals``, ``clamp``).

    Actions, rewards, dones and timeouts are SB3's own arrays (float32). ``n_steps > 1`` gives n-step
    returns with the semantics of SB3's ``NStepReplayBuffer`` (pass ``n_steps`` and ``gamma`` here).
    ``sample()`` returns float32 observation tensors decoded straight into tensor memory.
    ``observations`` and ``next_observations`` are the parent's zero-size placeholders; the data is
    ``packed_observations`` (and ``terminal_observations`` for episode ends).

    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> rb = QuantizedReplayBuffer(100, spaces.Box(-np.inf, np.inf, (3,)), spaces.Box(-1, 1, (1,)), decimals=2,
    ...                            clamp=100)
    >>> rb.add(np.array([[0.123, 5.0, -300.0]]), np.array([[0.2, 5.0, 1.0]]), np.zeros((1, 1)),
    ...        np.ones(1), np.zeros(1), [{}])
    >>> [round(v, 4) for v in rb.sample(1).observations[0].tolist()], rb.saturated
    ([0.12, 5.0, -100.0], 1)
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device: "th.device | str" = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, *, decimals: "int | None" = None, clamp: float = CLAMP,
                 bits: "int | None" = None, spec: "CodeSpec | None" = None, terminal_capacity: "int | None" = None,
                 n_steps: int = 1, gamma: float = 0.99) -> None:
        self.code_spec = observation_spec(observation_space, decimals, clamp, bits, spec)
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise PlannerError(f"n_steps must be a whole number >= 1, got {n_steps!r}")
        if buffer_size // n_envs < 2:
            raise PlannerError(f"buffer_size // n_envs must be >= 2 (next observations live in the following row), "
                               f"got {buffer_size} // {n_envs}")
        if terminal_capacity is not None and (isinstance(terminal_capacity, bool) or terminal_capacity < 1):
            raise PlannerError(f"terminal_capacity must be a whole number >= 1, got {terminal_capacity!r}")
        # optimize_memory_usage is implied (observations are stored once); SB3's check that forbids it
        # together with handle_timeout_termination does not apply, so the parent gets False.
        super().__init__(buffer_size, _placeholder_space(observation_space), action_space, device, n_envs=n_envs,
                         optimize_memory_usage=False, handle_timeout_termination=handle_timeout_termination)
        self.observation_space = observation_space
        self.obs_shape = get_obs_shape(observation_space)
        rows = self.buffer_size * n_envs
        capacity = terminal_capacity or default_terminal_capacity(rows, n_envs)
        self.packed_observations = PackedRows(rows, self.code_spec)
        self.terminal_observations = PackedRows(capacity, self.code_spec)
        self.terminal_observations.storage.fill(0)  # commit the ring's pages now, as the planner counts them
        self.terminal_slot = np.full(rows, FREE, dtype=np.int32)
        self.terminal_owner = np.full(capacity, FREE, dtype=np.int64)
        self.terminal_cursor = 0
        self.n_steps, self.gamma = n_steps, gamma
        self.terminal_evictions = 0
        self.timeout_evictions = 0
        self.stored_values = 0
        self._no_obs = np.empty((n_envs, 0), dtype=observation_space.dtype)
        self._last_next = b""  # the bytes of the last next observations added (a bytes object, not an array)

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            done: np.ndarray, infos: "list[dict[str, Any]]") -> None:
        n, dim, storage = self.n_envs, self.code_spec.dim, self.packed_observations.storage
        flat_obs, flat_next = flat_rows(obs, n, dim), flat_rows(next_obs, n, dim)
        pos = self.pos
        first = pos * n
        for row in range(first, first + n):
            self._release(row)
        envs = np.arange(n)
        if flat_obs.tobytes() != getattr(self, "_last_next", b""):  # a stream passes the same values: nothing replaced
            self._keep_replaced_next_observations(flat_obs, first)
        self.packed_observations.encode(flat_obs, envs + first)
        ends = [bool(d) or bool(info.get("TimeLimit.truncated", False))
                for d, info in zip(np.asarray(done).reshape(n).tolist(), infos)]
        following = ((pos + 1) % self.buffer_size) * n
        if not any(ends):
            quantize_pack(flat_next, storage, envs + following, self.code_spec)
        else:
            keep = [env for env in range(n) if not ends[env]]
            if keep:
                quantize_pack(flat_next[keep], storage, np.array(keep, dtype=np.int64) + following, self.code_spec)
        self.stored_values += (n + sum(ends)) * dim
        self._last_next = flat_next.tobytes()
        super().add(self._no_obs, self._no_obs, action, reward, done, infos)  # writes timeouts[pos], moves pos
        for env in range(n):
            if ends[env]:
                self._store_terminal(first + env, flat_next[env])

    def _keep_replaced_next_observations(self, flat_obs: np.ndarray, first: int) -> None:
        """Row ``first + env`` holds the previous transition's next observation unless that transition ended
        an episode. When the stream was interrupted (a new ``learn()`` resets the env, a buffer loaded into a
        fresh model, transitions added from a dataset), the new observation differs from it: the old codes
        then move to the terminal store, so that transition keeps its own next observation."""
        if self.pos == 0 and not self.full:
            return
        n, spec, storage = self.n_envs, self.code_spec, self.packed_observations.storage
        previous = (self.pos - 1) % self.buffer_size
        continuing = np.flatnonzero((self.dones[previous] == 0) & (self.timeouts[previous] == 0))
        if not continuing.size:
            return
        rows = continuing + first
        new = np.zeros((continuing.size, spec.row_words), dtype=np.uint64)
        quantize_pack(flat_obs[continuing], new, np.arange(continuing.size, dtype=np.int64), spec)
        replaced = np.flatnonzero((new != storage[rows]).any(axis=1))
        if replaced.size:
            old = np.empty((replaced.size, spec.dim), dtype=np.float64)
            gather_unpack(storage, rows[replaced], spec, old)
            for index, values in zip(replaced.tolist(), old):
                self._store_terminal(previous * n + int(continuing[index]), values)

    def reset(self) -> None:
        """Empty the buffer: SB3's reset plus a free terminal store."""
        super().reset()
        self._last_next = b""
        self.terminal_slot.fill(FREE)
        self.terminal_owner.fill(FREE)
        self.terminal_cursor = 0

    def _release(self, row: int) -> None:
        """Free the terminal slot of ``row`` (its transition is being overwritten)."""
        slot = int(self.terminal_slot[row])
        if slot != FREE:
            self.terminal_owner[slot] = FREE
            self.terminal_slot[row] = FREE

    def _is_timeout(self, row: int) -> bool:
        return bool(self.timeouts[row // self.n_envs, row % self.n_envs] > 0)

    def _store_terminal(self, row: int, next_obs: np.ndarray) -> None:
        """Keep ``row``'s episode-end next observation in the ring. A full ring gives up a terminated
        transition's entry first (SAC/TD3 mask its next observation by ``done``), a time limit's only to
        another time limit; a terminated transition that finds the ring full of time limits is not kept."""
        slot = self._slot_to_reuse()
        if slot is None:
            if not self._is_timeout(row):
                self.terminal_evictions += 1  # its next observation falls back to the following row
                return
            slot = self.terminal_cursor
        owner = int(self.terminal_owner[slot])
        if owner != FREE:
            self.terminal_slot[owner] = FREE
            self.terminal_evictions += 1
            self.timeout_evictions += self._is_timeout(owner)
        self.terminal_observations.encode(next_obs[None, :], np.array([slot], dtype=np.int64))
        self.terminal_owner[slot] = row
        self.terminal_slot[row] = slot
        self.terminal_cursor = (slot + 1) % self.terminal_owner.size

    def _slot_to_reuse(self) -> "int | None":
        """The first slot from the cursor on (cyclically) that is free or holds a terminated transition."""
        owners, cursor = self.terminal_owner, self.terminal_cursor
        if owners[cursor] == FREE or not self._is_timeout(int(owners[cursor])):
            return cursor
        used = owners != FREE
        timeouts = np.zeros(owners.size, dtype=bool)
        timeouts[used] = self.timeouts[owners[used] // self.n_envs, owners[used] % self.n_envs] > 0
        candidates = np.flatnonzero(~timeouts)
        if candidates.size == 0:
            return None
        later = candidates[candidates >= cursor]
        return int(later[0] if later.size else candidates[0])

    def sample(self, batch_size: int, env: "VecNormalize | None" = None) -> ReplayBufferSamples:
        """``batch_size`` transitions; a full buffer skips the row at ``pos`` (its observation was overwritten)."""
        if self.full:
            batch_inds = (np.random.randint(1, self.buffer_size, size=batch_size) + self.pos) % self.buffer_size
        else:
            batch_inds = np.random.randint(0, self.pos, size=batch_size)
        return self._get_samples(batch_inds, env=env)

    def _get_samples(self, batch_inds: np.ndarray, env: "VecNormalize | None" = None) -> ReplayBufferSamples:
        env_inds = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        steps = np.asarray(batch_inds, dtype=np.int64)
        if self.n_steps == 1:
            last, discounts = steps, None
            dones = (self.dones[steps, env_inds] * (1 - self.timeouts[steps, env_inds])).reshape(-1, 1)
            rewards = self._normalize_reward(self.rewards[steps, env_inds].reshape(-1, 1), env)
        else:
            targets = n_step_targets(self.rewards, self.dones, self.timeouts, steps, env_inds, self.pos, self.n_steps,
                                     self.gamma, lambda r: self._normalize_reward(r, env))
            last, dones, rewards = targets.last_steps, targets.dones, targets.returns
            discounts = self.to_torch(targets.discounts)
        rows = steps * self.n_envs + env_inds
        last_rows = last * self.n_envs + env_inds
        obs = self._decode(self.packed_observations, rows)
        next_obs = self._decode(self.packed_observations, ((last + 1) % self.buffer_size) * self.n_envs + env_inds)
        slots = self.terminal_slot[last_rows]
        ends = np.flatnonzero(slots != FREE)
        if ends.size:
            next_obs.numpy()[ends] = self._decode(self.terminal_observations, slots[ends]).numpy()
        return ReplayBufferSamples(self._observations(obs, env), self.to_torch(self.actions[steps, env_inds]),
                                   self._observations(next_obs, env), self.to_torch(dones), self.to_torch(rewards),
                                   discounts)

    def _decode(self, store: PackedRows, rows: np.ndarray) -> th.Tensor:
        return decode_to_tensor(store.storage, rows.astype(np.int64, copy=False), self.code_spec)

    def _observations(self, flat: th.Tensor, env: "VecNormalize | None") -> th.Tensor:
        """(n, dim) decoded rows -> (n, *obs_shape) on the device, normalized by ``env`` if given."""
        obs = flat.view(flat.shape[0], *self.obs_shape)
        if env is not None:
            obs = th.from_numpy(self._normalize_obs(obs.numpy(), env).astype(np.float32, copy=False))
        return obs if self.device.type == "cpu" else obs.to(self.device)

    @property
    def saturated(self) -> int:
        """Stored observation values that saturated at the clamp (each transition's observation counted once,
        episode-end next observations too)."""
        return self.packed_observations.saturated + self.terminal_observations.saturated

    def quantization_stats(self) -> "dict[str, float]":
        """Counters for logging: saturations, their share of stored values, terminal-store evictions."""
        return {"saturated": self.saturated, "saturated_fraction": self.saturated / max(self.stored_values, 1),
                "terminal_evictions": self.terminal_evictions, "timeout_evictions": self.timeout_evictions,
                "terminal_capacity": int(self.terminal_owner.size)}

    def memory_breakdown(self) -> "dict[str, int]":
        """Bytes of each array, named as the planner's ``packed`` layout names its fields."""
        return {"observations": self.packed_observations.nbytes,
                "terminal_observations": self.terminal_observations.nbytes,
                "terminal_slot": self.terminal_slot.nbytes, "terminal_owner": self.terminal_owner.nbytes,
                "actions": self.actions.nbytes, "rewards": self.rewards.nbytes, "dones": self.dones.nbytes,
                "timeouts": self.timeouts.nbytes}

    def memory_bytes(self) -> int:
        """Total bytes allocated (what the planner's ``packed`` layout predicts, to the byte)."""
        return sum(self.memory_breakdown().values())
