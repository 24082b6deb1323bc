"""QuantizedReplayBuffer: SB3's ReplayBuffer with each observation stored once, as k-bit packed codes.

Every observation space SB3 stores is taken: Boxes of floats are quantized; images, integer Boxes, Discrete,
MultiDiscrete and MultiBinary are stored as SB3 stores them (still once); a Dict space has one column per key
(:mod:`validation.buffers.obs_store`). Row ``pos * n_envs + env`` holds the observation of that transition; its next
observation is the following row (``(pos + 1) % buffer_size``), written by ``add()`` unless the transition ends
an episode (done or timeout). When the next ``add()`` brings a different observation for that row (an
interrupted stream: a second ``learn()``, a loaded buffer, transitions from a dataset), the replaced codes move
to the terminal store first, so no next observation is ever replaced silently. Episode-end next
observations go to a small ring of rows (the terminal store). When it is full, a terminated
transition's entry is given up first (its next observation is masked by ``done`` in SAC/TD3's target),
one whose next observation enters a target (a time limit's, an interrupted stream's) only to make room
for another such; a transition whose entry is given up falls back to the following row, as SB3's
``optimize_memory_usage`` would (``terminal_evictions`` counts them, ``timeout_evictions`` those among them
whose next observation entered a target: only those change a learning target).
As in SB3's ``optimize_memory_usage``, a full buffer never samples the row at ``pos``.
``add()`` validates and encodes everything before it changes any state: a rejected transition (a NaN
observation, a wrong shape) leaves the buffer as it was.
"""

from os import PathLike
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.her.goal_selection_strategy import GoalSelectionStrategy
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from cython_core import CodeLayout, EscapeLayout
from planner.defaults import CLAMP, default_decimals
from planner.errors import PlannerError, quote
from planner.layouts import default_terminal_capacity
from planner.obs_ranges import ObservationRanges
from validation.buffers.nstep import n_step_targets
from validation.buffers.obs_store import CODEC_OPTIONS, Codes, Drift, ObservationCodec, ObservationRows, PerKey
from validation.buffers.persistence import PersistentBuffer

FREE = -1
PLACEHOLDER = spaces.Box(low=0, high=0, shape=(0,), dtype=np.float32)  # the parents allocate 0-byte observations


class ObservationView:
    """Read access in SB3's layout, decoded on demand: ``buffer.observations[batch_inds, env_inds]`` (what
    HerReplayBuffer and code written for SB3's arrays read). ``next_observations`` follows each transition's
    own next observation (the following row, or the terminal store). Writing goes through ``add()`` only."""

    def __init__(self, buffer: "QuantizedReplayBuffer", key: "str | None", following: bool) -> None:
        self.buffer, self.key, self.following = buffer, key, following
        column = buffer.codec.columns[key]
        self.shape = (buffer.buffer_size, buffer.n_envs, *column.shape)
        self.dtype = column.sample_dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        grid = np.arange(self.shape[0] * self.shape[1], dtype=np.int64).reshape(self.shape[:2])
        rows = grid[index[:2]]
        flat = np.asarray(rows).reshape(-1)
        decoded = self.buffer.decode_rows(flat, self.following)[self.key].numpy()
        out = decoded.reshape(*np.shape(rows), *self.shape[2:])
        return out[(slice(None),) * np.ndim(rows) + index[2:]] if len(index) > 2 else out

    def __setitem__(self, index: Any, value: Any) -> None:
        raise PlannerError("the quantized buffer's observations are codes: write them with add()", "observations")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class QuantizedReplayBuffer(PersistentBuffer, ReplayBuffer):
    """Drop-in replay buffer for SAC/TD3/DDPG/DQN/TQC storing observations once, as k-bit codes.

    Actions, rewards, dones and timeouts are SB3's own arrays (float32). ``n_steps > 1`` gives n-step
    returns with the semantics of SB3's ``NStepReplayBuffer`` (pass ``n_steps`` and ``gamma`` here).
    ``sample()`` returns float32 tensors for quantized observations (decoded straight into tensor memory), the
    space's dtype for the others, a dict of them for a Dict space (``DictReplayBufferSamples``).
    ``observations`` and ``next_observations`` are :class:`ObservationView` objects (a dict of them for a Dict
    space) that decode on read; the data is ``stored_observations`` and ``terminal_observations``.

    :param decimals: m of the quantized columns (default: SAC's, :func:`planner.defaults.default_decimals`); this
        and the next five are :class:`~validation.buffers.obs_store.ObservationCodec`'s (a dict by key for a Dict
        space)
    :param clamp: b, values outside [-b, b] saturate
    :param bits: the width of the codes (default: the exact level count)
    :param layout: a :class:`~cython_core.CodeLayout` instead of ``decimals``, ``clamp`` and ``bits``
    :param dtype: "float16" or "bfloat16": floats in that type instead of k-bit codes
    :param obs_ranges: observation ranges (or their file): calibrated widths per dimension
    :param recalibrate: with ``obs_ranges``: choose the widths again from the rows as they fill and re-pack when
        that saves bits (:class:`~validation.buffers.obs_store.Drift`); False: keep the given ranges' widths
    :param terminal_capacity: rows of the episode-end store (default max(n_envs, ceil(rows / 64)))
    :param n_steps: n-step returns (1: plain one-step transitions)
    :param gamma: the discount of n-step returns

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
                 device: "th.device | str" = "auto", *, n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, decimals: "PerKey[int | None]" = None,
                 clamp: "PerKey[float]" = CLAMP, bits: "PerKey[int | None]" = None,
                 layout: "PerKey[CodeLayout | None]" = None, dtype: "PerKey[str | None]" = None,
                 obs_ranges: "PerKey[ObservationRanges | str | PathLike | None]" = None,
                 recalibrate: bool = True, terminal_capacity: "int | None" = None,
                 n_steps: int = 1, gamma: float = 0.99) -> None:
        options = dict(decimals=decimals, clamp=clamp, bits=bits, layout=layout, dtype=dtype, obs_ranges=obs_ranges,
                       recalibrate=recalibrate, terminal_capacity=terminal_capacity, n_steps=n_steps, gamma=gamma)
        deferred = self.__dict__.pop("_quantization", {})  # QuantizedHerReplayBuffer's, see there
        unknown = sorted(set(deferred) - set(options))
        if unknown:
            raise PlannerError(f"unknown replay_buffer_kwargs: {', '.join(unknown)} (the quantized buffer takes "
                               f"{', '.join(options)})", *unknown)
        options.update(deferred)
        terminal_capacity, n_steps, gamma = options["terminal_capacity"], options["n_steps"], options["gamma"]
        self.codec = ObservationCodec(observation_space, default_decimals=default_decimals("sac"),
                                      **{name: options[name] for name in CODEC_OPTIONS})
        self.drift = Drift(self.codec, options["recalibrate"])
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise PlannerError(f"n_steps must be a whole number >= 1, got {quote(n_steps)}", "n_steps")
        if terminal_capacity is not None and (isinstance(terminal_capacity, bool) or terminal_capacity < 1):
            raise PlannerError(f"terminal_capacity must be a whole number >= 1, got {quote(terminal_capacity)}",
                               "terminal_capacity")
        if buffer_size // n_envs < 2 and terminal_capacity is not None and terminal_capacity < n_envs:
            raise PlannerError(f"with one row per env every next observation lives in the terminal store: "
                               f"terminal_capacity must be >= n_envs ({n_envs}), got {terminal_capacity}",
                               "terminal_capacity")
        # optimize_memory_usage is implied (observations are stored once); SB3's check that forbids it
        # together with handle_timeout_termination does not apply, so the parent gets False. Called by name:
        # DictReplayBuffer's constructor (next in a QuantizedDictReplayBuffer's MRO) would allocate per key.
        ReplayBuffer.__init__(self, buffer_size, PLACEHOLDER, action_space, device, n_envs=n_envs,
                              optimize_memory_usage=False, handle_timeout_termination=handle_timeout_termination)
        self.observation_space = observation_space
        self.obs_shape = get_obs_shape(observation_space)
        rows = self.buffer_size * n_envs
        capacity = terminal_capacity or default_terminal_capacity(rows, n_envs)
        self.stored_observations = ObservationRows(self.codec, rows)
        self.terminal_observations = ObservationRows(self.codec, capacity, eager=True)  # pages committed now
        self.terminal_slot = np.full(rows, FREE, dtype=np.int32)
        self.terminal_owner = np.full(capacity, FREE, dtype=np.int64)
        self.terminal_cursor = 0
        self.n_steps, self.gamma = n_steps, gamma
        self.terminal_evictions = 0
        self.timeout_evictions = 0
        self.stored_values = 0
        self._attach_views()

    def _attach_views(self) -> None:
        self.observations = self.codec.pack({key: ObservationView(self, key, False) for key in self.codec.columns})
        self.next_observations = self.codec.pack({key: ObservationView(self, key, True)
                                                  for key in self.codec.columns})

    def _upgrade_from_version_0(self) -> None:
        """A buffer pickled before format versions kept one Box's ``PackedRows`` and its CodeLayout ``code_spec``."""
        state = self.__dict__
        self.codec = ObservationCodec(self.observation_space, layout=state.pop("code_spec"))
        for old, new in (("packed_observations", "stored_observations"),
                         ("terminal_observations", "terminal_observations")):
            rows = state.pop(old)
            setattr(self, new, ObservationRows.holding(self.codec, {None: rows.storage}, rows.saturated))
        for name in ("_last_next", "_no_obs"):
            state.pop(name, None)
        self._attach_views()

    @property
    def code_layout(self) -> "CodeLayout | EscapeLayout | dict[str, CodeLayout | EscapeLayout] | None":
        """The CodeLayout of a quantized Box space; for a Dict space, a dict of them by key; None if none."""
        return self.codec.code_layout

    def add(self, obs: Any, next_obs: Any, action: np.ndarray, reward: np.ndarray, done: np.ndarray,
            infos: "list[dict[str, Any]]") -> None:
        n, size, pos, stored, in_place = self.n_envs, self.buffer_size, self.pos, self.stored_observations, \
            self.codec.in_place
        first, following = pos * n, ((pos + 1) % size) * n
        continues = (pos or self.full) and size > 1  # rows ``first``.. hold the last next observations
        # Validate and encode everything first: a rejected transition changes nothing.
        try:
            row_action = np.asarray(action).reshape(n, self.action_dim)
        except ValueError:
            self.codec.encode(obs, n)  # an observation of another space (a buffer loaded elsewhere) says so first
            raise
        row_reward, row_done = _per_env(reward, n, "reward"), _per_env(done, n, "done")
        truncated = [bool(info.get("TimeLimit.truncated", False)) for info in infos]
        # One row per env: the following row is the transition's own, so every next observation is kept aside.
        any_end = size == 1 or True in truncated or any(row_done.tolist())
        if continues and in_place and not any_end:
            # The usual add: the stream goes on (rows ``first``.. hold ``obs`` already, as the previous transitions'
            # next observations), so ``next_obs`` goes straight into the following rows (the oldest transition's
            # observation, retired by this add); nothing written where the rows do not hold ``obs`` (an
            # interrupted stream, sorted out below) or a value is rejected.
            held, saturated = self.codec.columns[None].continue_into(stored.arrays[None], first, following, n, obs,
                                                                     next_obs)
            if held:
                self._release(first)
                stored.saturated += saturated
                self._advance(row_action, row_reward, row_done, truncated)
                self.drift.check(self._observation_stores, self._rows_held, n)
                return
        if continues and in_place:  # compared with the rows in the kernel: no codes unless they differ
            obs_codes = stored.match(first, n, obs)
        else:
            obs_codes = self.codec.encode(obs, n)
        if any_end:
            next_codes = self.codec.encode(next_obs, n)
            ends = (row_done != 0) | np.array(truncated, dtype=bool) | (size == 1)
            end_saturated = self.codec.encode(_select(next_obs, ends), int(ends.sum())).saturated
        elif in_place:
            # Straight into the following rows (the kernel writes nothing if it rejects next_obs): they hold the
            # oldest transition's observation, which this add retires (a full buffer never samples row ``pos``).
            stored.encode_into(following, n, next_obs)  # counted as an observation
        else:
            next_codes = self.codec.encode(next_obs, n)

        self._release(first)
        if obs_codes.arrays is None or (continues and self._holds_or_keeps_replaced(obs_codes, first)):
            stored.saturated += obs_codes.saturated  # the stream goes on: the rows hold these codes already
        else:
            stored.put(slice(first, first + n), obs_codes)
        if any_end:
            keep = np.flatnonzero(~ends)
            stored.put(keep + following, next_codes.select(keep))
        elif not in_place:
            stored.put(slice(following, following + n), Codes(next_codes.arrays, 0))  # counted as an observation
        self.stored_values += int(ends.sum()) * self.codec.quantized_values if any_end else 0
        self._advance(row_action, row_reward, row_done, truncated)
        if any_end:
            for env in np.flatnonzero(ends).tolist():
                self._store_terminal(first + env, next_codes.select([env]))
            self.terminal_observations.saturated += end_saturated
        self.drift.check(self._observation_stores, self._rows_held, n)

    def _advance(self, row_action: np.ndarray, row_reward: np.ndarray, row_done: np.ndarray,
                 truncated: "list[bool]") -> None:
        """Write row ``pos``'s actions, rewards, dones (and timeouts), count its observations and move on."""
        pos = self.pos
        self.stored_values += self.n_envs * self.codec.quantized_values
        self.actions[pos], self.rewards[pos], self.dones[pos] = row_action, row_reward, row_done
        if self.handle_timeout_termination:
            self.timeouts[pos] = truncated
        self.pos = (pos + 1) % self.buffer_size
        self.full = self.full or self.pos == 0

    def _observation_stores(self) -> "list[ObservationRows]":
        """The observation stores: the main one and the episode-end one."""
        return [self.stored_observations, self.terminal_observations]

    def _rows_held(self) -> "list[int | np.ndarray]":
        """The rows holding data: in the main store, a count (the transitions' observations and, in the row after the
        last, its next observation; no index array, which a device-sized buffer has no room for), and in the terminal
        store, their indices."""
        return [(self.buffer_size if self.full else min(self.pos + 1, self.buffer_size)) * self.n_envs,
                np.flatnonzero(self.terminal_owner != FREE)]

    def _holds_or_keeps_replaced(self, obs_codes: Codes, first: int) -> bool:
        """Whether rows ``first``.. (the previous transitions' next observations) hold ``obs_codes`` already: the
        stream goes on, the usual case. When it was interrupted (a new ``learn()`` resets the env, a buffer loaded
        into a fresh model, transitions added from a dataset or by ``extend()``), the new observation's codes
        differ from a continuing transition's next observation: the old codes then move to the terminal store
        first, so that transition keeps its own next observation (and this returns False)."""
        n = self.n_envs
        rows = slice(first, first + n)
        if self.stored_observations.holds(rows, obs_codes):
            return True
        same = self.stored_observations.same(rows, obs_codes)
        previous = (self.pos - 1) % self.buffer_size
        continuing = (self.dones[previous] == 0) & (self.timeouts[previous] == 0)
        for env in np.flatnonzero(continuing & ~same).tolist():
            self._store_terminal(previous * n + env, self.stored_observations.take(np.array([first + env])))
        return False

    def reset(self) -> None:
        """Empty the buffer: SB3's reset plus a free terminal store."""
        super().reset()
        self.terminal_slot.fill(FREE)
        self.terminal_owner.fill(FREE)
        self.terminal_cursor = 0

    def _release(self, first: int) -> None:
        """Free the terminal slots of rows ``first``.. (one per env: their transitions are being overwritten)."""
        for row in range(first, first + self.n_envs):
            slot = int(self.terminal_slot[row])
            if slot != FREE:
                self.terminal_owner[slot] = FREE
                self.terminal_slot[row] = FREE

    def _in_target(self, row: int) -> bool:
        """Whether ``row``'s next observation enters a SAC/TD3 target: a time limit's, or (an interrupted stream)
        a transition that did not end its episode; only a terminated transition's is masked by ``done``."""
        step, env = divmod(row, self.n_envs)
        return bool(self.timeouts[step, env] > 0 or self.dones[step, env] == 0)

    def _store_terminal(self, row: int, codes: Codes) -> None:
        """Keep ``row``'s next observation (one row of codes) in the ring. A full ring gives up a terminated
        transition's entry first (SAC/TD3 mask its next observation by ``done``), one that enters a target (a
        time limit, an interrupted stream) only to another such; a terminated transition that finds the ring full
        of those is not kept."""
        slot = self._slot_to_reuse()
        if slot is None:
            if not self._in_target(row):
                self.terminal_evictions += 1  # its next observation falls back to the following row
                return
            slot = self.terminal_cursor
        owner = int(self.terminal_owner[slot])
        if owner != FREE:
            self.terminal_slot[owner] = FREE
            self.terminal_evictions += 1
            self.timeout_evictions += self._in_target(owner)
        self.terminal_observations.put(np.array([slot]), codes)
        self.terminal_owner[slot] = row
        self.terminal_slot[row] = slot
        self.terminal_cursor = (slot + 1) % self.terminal_owner.size

    def _slot_to_reuse(self) -> "int | None":
        """The first slot from the cursor on (cyclically) that is free or holds a terminated transition."""
        owners, cursor = self.terminal_owner, self.terminal_cursor
        if owners[cursor] == FREE or not self._in_target(int(owners[cursor])):
            return cursor
        used = owners != FREE
        step, env = np.divmod(owners[used], self.n_envs)
        in_target = np.zeros(owners.size, dtype=bool)
        in_target[used] = (self.timeouts[step, env] > 0) | (self.dones[step, env] == 0)
        candidates = np.flatnonzero(~in_target)
        if candidates.size == 0:
            return None
        later = candidates[candidates >= cursor]
        return int(later[0] if later.size else candidates[0])

    def sample(self, batch_size: int, env: "VecNormalize | None" = None) -> Any:
        """``batch_size`` transitions; a full buffer skips the row at ``pos`` (its observation was overwritten)."""
        if self.full and self.buffer_size == 1:  # its one row per env keeps its next observations aside
            batch_inds = np.zeros(batch_size, dtype=np.int64)
        elif self.full:
            batch_inds = (np.random.randint(1, self.buffer_size, size=batch_size) + self.pos) % self.buffer_size
        else:
            batch_inds = np.random.randint(0, self.pos, size=batch_size)
        return self._get_samples(batch_inds, env=env)

    def decode_rows(self, rows: np.ndarray, following: bool = False) -> "dict[str | None, th.Tensor]":
        """The observations of transition rows ``step * n_envs + env`` (their next observations if
        ``following``: the following row, or the terminal store where the transition ended an episode)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not following:
            return self.stored_observations.decode(rows)
        decoded = self.stored_observations.decode(self._following(rows))
        self._patch_ends(decoded, rows)
        return decoded

    def _following(self, rows: np.ndarray) -> np.ndarray:
        """The rows after transition rows ``rows`` (each env's next step, the ring wrapping)."""
        if self.n_envs == 1:
            return (rows + 1) % self.buffer_size
        step, env = np.divmod(rows, self.n_envs)
        return ((step + 1) % self.buffer_size) * self.n_envs + env

    def _patch_ends(self, decoded: "dict[str | None, th.Tensor]", rows: np.ndarray) -> None:
        """Overwrite the next observations ``decoded`` of transition rows ``rows`` with the terminal store's where
        it keeps them (an episode end, or an interrupted stream)."""
        slots = np.take(self.terminal_slot, rows)
        ends = np.flatnonzero(slots != FREE)
        if ends.size:
            for key, values in self.terminal_observations.decode(slots[ends].astype(np.int64)).items():
                decoded[key][ends] = values

    def _get_samples(self, batch_inds: np.ndarray, env: "VecNormalize | None" = None) -> Any:
        env_inds = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        steps = np.asarray(batch_inds, dtype=np.int64)
        rows = steps * self.n_envs + env_inds  # one flat index per transition: np.take on each array's rows
        if self.n_steps == 1:
            last, discounts = steps, None
            dones = (np.take(self.dones.reshape(-1), rows) * (1 - np.take(self.timeouts.reshape(-1), rows)))
            dones = dones.reshape(-1, 1)
            rewards = self._normalize_reward(np.take(self.rewards.reshape(-1), rows).reshape(-1, 1), env)
        else:
            targets = n_step_targets(self.rewards, self.dones, self.timeouts, steps, env_inds, pos=self.pos,
                                     n_steps=self.n_steps, gamma=self.gamma,
                                     normalize_reward=lambda r: self._normalize_reward(r, env))
            last, dones, rewards = targets.last_steps, targets.dones, targets.returns
            discounts = self.to_torch(targets.discounts)
        last_rows = rows if last is steps else last * self.n_envs + env_inds
        decoded, following = self.stored_observations.decode_pair(rows, self._following(last_rows))
        self._patch_ends(following, last_rows)
        obs, next_obs = self._observations(decoded, env), self._observations(following, env)
        actions = np.take(self.actions.reshape(len(self.actions) * self.n_envs, -1), rows, axis=0)
        samples = DictReplayBufferSamples if self.codec.is_dict else ReplayBufferSamples
        # each array here is a new one of this call's: the tensors share it rather than copy it
        return samples(obs, self.to_torch(actions, copy=False), next_obs, self.to_torch(dones, copy=False),
                       self.to_torch(rewards, copy=False), discounts)

    def _observations(self, decoded: "dict[str | None, th.Tensor]", env: "VecNormalize | None") -> Any:
        """Decoded columns as SB3 returns them: on the device, normalized by ``env`` if given."""
        if env is not None:
            normalized = self._normalize_obs(self.codec.pack({k: v.numpy() for k, v in decoded.items()}), env)
            normalized = normalized if self.codec.is_dict else {None: normalized}
            decoded = {key: th.from_numpy(np.asarray(value)) for key, value in normalized.items()}
        if self.device.type != "cpu":
            decoded = {key: value.to(self.device) for key, value in decoded.items()}
        return self.codec.pack(decoded)

    @property
    def saturated(self) -> int:
        """Stored observation values that saturated at the clamp (each transition's observation counted once,
        episode-end next observations too)."""
        return self.stored_observations.saturated + self.terminal_observations.saturated

    def quantization_stats(self) -> "dict[str, float]":
        """Counters for logging: saturations, their share of stored values, terminal-store evictions."""
        return {"saturated": self.saturated, "saturated_fraction": self.saturated / max(self.stored_values, 1),
                "terminal_evictions": self.terminal_evictions, "timeout_evictions": self.timeout_evictions,
                "terminal_capacity": int(self.terminal_owner.size),
                **self.drift.stats(self._observation_stores())}

    def memory_breakdown(self) -> "dict[str, int]":
        """Bytes of each array, named as the planner's ``packed`` layout names its fields."""
        return {**self.stored_observations.breakdown("observations"),
                **self.terminal_observations.breakdown("terminal_observations"),
                "terminal_slot": self.terminal_slot.nbytes, "terminal_owner": self.terminal_owner.nbytes,
                "actions": self.actions.nbytes, "rewards": self.rewards.nbytes, "dones": self.dones.nbytes,
                "timeouts": self.timeouts.nbytes, **self._extra_breakdown()}

    def _extra_breakdown(self) -> "dict[str, int]":
        return {}

    def memory_bytes(self) -> int:
        """Total bytes allocated (what the planner's ``packed`` layout predicts, to the byte; ``calibrated``: with
        the exception store as allocated, which grows past the prediction when the data exceeds the ranges' rate;
        after a recalibration the prediction is stale, and this warns so)."""
        return self.drift.memory_bytes(self.memory_breakdown(), self._observation_stores())


class QuantizedDictReplayBuffer(QuantizedReplayBuffer, DictReplayBuffer):
    """:class:`QuantizedReplayBuffer` (which takes Dict spaces itself) that is also a ``DictReplayBuffer`` for
    ``isinstance`` checks; placed before SB3's class so that HER's ``super()`` calls reach the quantized store.
    As SB3's, it takes Dict observation spaces only."""

    def __init__(self, buffer_size: int, observation_space: spaces.Space, *args: Any, **kwargs: Any) -> None:
        assert isinstance(observation_space, spaces.Dict), "DictReplayBuffer must be used with Dict obs space only"
        super().__init__(buffer_size, observation_space, *args, **kwargs)


class QuantizedHerReplayBuffer(HerReplayBuffer, QuantizedDictReplayBuffer):
    """SB3's HerReplayBuffer on the quantized store: its goal relabelling reads ``observations`` and
    ``next_observations`` through :class:`ObservationView` (decoded, episode ends from the terminal store).

    ``SAC("MultiInputPolicy", env, replay_buffer_class=QuantizedHerReplayBuffer,
    replay_buffer_kwargs=dict(n_sampled_goal=4, goal_selection_strategy="future", decimals=2))``

    :param quantization: :class:`QuantizedReplayBuffer`'s keyword arguments (``decimals``, ``clamp``, ``bits``,
        ``layout``, ``dtype``, ``obs_ranges``, ``recalibrate``, ``terminal_capacity``, ``n_steps``, ``gamma``); the
        others are HerReplayBuffer's
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Dict, action_space: spaces.Space, env: VecEnv,
                 device: "th.device | str" = "auto", *, n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, n_sampled_goal: int = 4,
                 goal_selection_strategy: "GoalSelectionStrategy | str" = "future", copy_info_dict: bool = False,
                 **quantization: Any) -> None:
        self._quantization = quantization  # HerReplayBuffer's constructor passes only SB3's arguments on
        super().__init__(buffer_size, observation_space, action_space, env, device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination, n_sampled_goal=n_sampled_goal,
                         goal_selection_strategy=goal_selection_strategy, copy_info_dict=copy_info_dict)

    def add(self, obs: Any, next_obs: Any, action: np.ndarray, reward: np.ndarray, done: np.ndarray,
            infos: "list[dict[str, Any]]") -> None:
        """HerReplayBuffer's ``add()``, with the observations validated before its episode bookkeeping changes."""
        self.codec.encode(obs, self.n_envs)
        self.codec.encode(next_obs, self.n_envs)
        super().add(obs, next_obs, action, reward, done, infos)

    def _extra_breakdown(self) -> "dict[str, int]":
        """HerReplayBuffer's episode bookkeeping, as the planner's HER fields name it."""
        return {"ep_start": self.ep_start.nbytes, "ep_length": self.ep_length.nbytes, "infos": self.infos.nbytes,
                "_current_ep_start": self._current_ep_start.nbytes}


def _per_env(values: Any, n: int, name: str) -> np.ndarray:
    """One value per env, as SB3 writes ``reward`` and ``done`` into a row (a single value is broadcast)."""
    arr = np.asarray(values)
    if arr.shape == (n,):
        return arr
    if arr.size not in (1, n):
        raise PlannerError(f"{name} has shape {arr.shape}, expected ({n},) (n_envs = {n})", name)
    return np.broadcast_to(arr.reshape(-1), (n,))


def _select(obs: Any, envs: np.ndarray) -> Any:
    """The rows ``envs`` of a batch of observations (an array, or a dict of arrays)."""
    if isinstance(obs, dict):
        return {key: np.asarray(value)[envs] for key, value in obs.items()}
    return np.asarray(obs)[envs]
