"""Buffer layouts as explicit field lists: what each storage allocates, field by field.

One function per storage of :mod:`planner.storages` (which names them, labels them and says which
buffer class implements them):

- ``paper64_fields``: the paper's Section III accounting, (s, a, r) all float64.
- ``sb3_fields``: stable-baselines3 2.9 as it allocates; with ``optimize_memory_usage=True`` its
  ReplayBuffer keeps no next_observations. Observations in the space's dtype and shape (images uint8, as
  the model sees them: stacked, channels first); a Dict one array per key (DictReplayBuffer,
  DictRolloutBuffer, named ``observations[KEY]``); HerReplayBuffer's episode bookkeeping besides.
- ``just_round_fields``: the authors' published buffers, observations as uint16.
- ``packed_fields``: our k-bit packed rows at bit stride (observations stored once; episode-end next
  observations in a small side store), exactly what ``validation.buffers`` allocates.

A recurrent policy's rollout (sb3-contrib's RecurrentPPO: RecurrentRolloutBuffer, RecurrentDictRolloutBuffer)
keeps besides, in every storage, the LSTMs' hidden and cell states at each step (:func:`lstm_state_fields`).
- ``figure2_fields``: the accounting behind the paper's Figure 2 ratios.
"""

from dataclasses import dataclass, replace

from cython_core.layout import (
    ENTRY_BYTES,
    SEGMENT_BYTES,
    WORD_BYTES,
    segment_count,
    words_for,
)
from planner.algorithms import algorithm
from planner.defaults import CLAMP
from planner.observations import FLOAT_DTYPES
from planner.runspec import DTYPE_BYTES, RunSpec

F32 = "float32"
ROLLOUT_SCALARS = ("rewards", "returns", "episode_starts", "values", "log_probs", "advantages")
FIGURE2_PPO_SCALARS = 7
TERMINAL_FRACTION = 64


@dataclass(frozen=True)
class Field:
    """One array of the buffer: ``rows`` rows of ``row_bits`` bits each.

    ``eager`` fields are committed before the buffer's rows are written (initialised at construction,
    or a small ring that fills with the first episode ends); the others are committed row by row as
    the buffer fills (numpy's zeroed pages are committed lazily).
    """

    name: str
    rows: int
    row_bits: int
    storage: str
    observation: bool = False
    eager: bool = False

    @property
    def bytes(self) -> int:
        return -(-self.rows * self.row_bits // 8)

    @property
    def row_bytes(self) -> float:
        return self.row_bits / 8


def dtype_field(name: str, rows: int, values: int, dtype: str, observation: bool = False) -> Field:
    """``rows`` x ``values`` elements of ``dtype``."""
    return Field(name, rows, values * DTYPE_BYTES[dtype] * 8, f"{values} x {dtype}" if values > 1 else dtype,
                 observation)


def tail_field(name: str, rows: int, row_bits: int, eager: bool = False) -> Field:
    """What a stream of ``rows`` rows at bit stride (cython_core.layout.words_for) allocates past the rows' own
    bits: the last word's unused bits and the spare word."""
    tail = words_for(rows, row_bits) * WORD_BYTES - -(-rows * row_bits // 8)
    return Field(f"{name}.tail", 1, tail * 8, "last word's unused bits and the spare word", True, eager)


def packed_rows_fields(name: str, rows: int, dim: int, bits: int, eager: bool = False) -> "tuple[Field, ...]":
    """Rows of ``dim`` codes of ``bits`` bits at bit stride (cython_core's PackedRows) and the stream's tail."""
    return (Field(name, rows, dim * bits, f"{dim} x {bits}-bit packed at bit stride", True, eager),
            tail_field(name, rows, dim * bits, eager))


def calibrated_fields(spec: RunSpec, name: str, rows: int, eager: bool = False) -> "tuple[Field, ...]":
    """Escape-coded rows at bit stride on the observation ranges' widths (cython_core.escape), the words' tail (the
    last word's unused bits and the spare word), the side table's block table, and its pool of entries allocated
    for the ranges' expected rate (it grows when the data exceeds it)."""
    obs_ranges = spec.obs_ranges
    row_bits, dim = obs_ranges.row_bits, obs_ranges.dim
    return (Field(name, rows, row_bits, f"{dim} dims in calibrated widths, mean {obs_ranges.mean_bits:.2f} bits, "
                  f"{row_bits} bits/row at bit stride", True, eager),
            tail_field(name, rows, row_bits, eager),
            Field(f"{name}.blocks", segment_count(rows, dim), SEGMENT_BYTES * 8,
                  "side-table block: start uint32, length and room uint16", True, eager),
            Field(f"{name}.exceptions", obs_ranges.exception_capacity(rows), ENTRY_BYTES * 8,
                  f"side-table entries (uint32): the ranges' {obs_ranges.exceptions_per_row:.4f} per row with slack "
                  "(grows if exceeded)", True, False))


def calibrated_limits(spec: RunSpec) -> "str | None":
    """The calibrated storage packs one flat Box of floats on observation ranges that have its size."""
    if spec.obs_ranges is None:
        return "needs observation ranges (planner obs scan) for its per-dimension widths"
    if spec.observation.kind != "box" or spec.obs_dtype not in FLOAT_DTYPES:
        return f"packs a Box of floats on observation ranges, not {spec.observation}"
    if spec.obs_ranges.dim != spec.obs_values:
        env = spec.obs_ranges.source.get("env")
        return (f"needs observation ranges of {spec.obs_values} dims (the run's observations), got one of "
                f"{spec.obs_ranges.dim}{f' scanned on {env}' if env else ''}")
    if spec.quant.decimals != spec.obs_ranges.decimals or spec.quant.clamp != spec.obs_ranges.clamp:
        return (f"keeps the observation ranges' m = {spec.obs_ranges.decimals}, b = {spec.obs_ranges.clamp:g}, not "
                f"m = {spec.quant.decimals}, b = {spec.quant.clamp:g}")
    return None


def default_terminal_capacity(rows: int, n_envs: int) -> int:
    """Default side-store rows for episode-end next observations: max(n_envs, ceil(rows / 64))."""
    return max(n_envs, -(-rows // TERMINAL_FRACTION))


def terminal_capacity(spec: RunSpec) -> int:
    """Side-store rows for episode-end next observations: given, or :func:`default_terminal_capacity`."""
    if spec.terminal_capacity is not None:
        return spec.terminal_capacity
    return default_terminal_capacity(spec.rows, spec.n_envs)


def paper64_fields(spec: RunSpec) -> "tuple[Field, ...]":
    rows = spec.rows
    return (dtype_field("observations", rows, spec.obs_values, "float64", True),
            dtype_field("actions", rows, spec.action_dim, "float64"),
            dtype_field("rewards", rows, 1, "float64"))


def _replay_tail(spec: RunSpec, action_dtype: str) -> "tuple[Field, ...]":
    rows = spec.rows
    return (dtype_field("actions", rows, spec.action_dim, action_dtype),
            *(dtype_field(name, rows, 1, F32) for name in ("rewards", "dones", "timeouts")))


def lstm_state_fields(spec: RunSpec) -> "tuple[Field, ...]":
    """sb3-contrib 2.9's RecurrentRolloutBuffer (and RecurrentDictRolloutBuffer): ``hidden_states_pi``,
    ``cell_states_pi``, ``hidden_states_vf`` and ``cell_states_vf``, each float32 of shape (n_steps,
    n_lstm_layers, n_envs, lstm_hidden_size); none for a policy without an LSTM.

    >>> [(f.name, f.bytes) for f in lstm_state_fields(RunSpec("ppo_lstm", obs_dim=4, action_dim=1, n_envs=2))]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('hidden_states_pi', 262144), ('cell_states_pi', 262144), ('hidden_states_vf', 262144),
     ('cell_states_vf', 262144)]
    """
    entry = algorithm(spec.algo)
    if not entry.lstm:
        return ()
    return tuple(dtype_field(f"{state}_states_{net}", spec.rows, entry.lstm_layers * entry.lstm, F32)
                 for net in ("pi", "vf") for state in ("hidden", "cell"))


def _rollout_tail(spec: RunSpec, action_dtype: str) -> "tuple[Field, ...]":
    rows = spec.rows
    return (dtype_field("actions", rows, spec.action_dim, action_dtype),
            *(dtype_field(name, rows, 1, F32) for name in ROLLOUT_SCALARS), *lstm_state_fields(spec))


def _sb3_replay_action_dtype(spec: RunSpec) -> str:
    """SB3's ReplayBuffer casts float64 actions to float32 and keeps other dtypes (Discrete and MultiDiscrete
    int64, MultiBinary int8); its RolloutBuffer keeps the space's dtype. ``spec.action_dim`` and
    ``spec.action_dtype`` are the action space's buffer columns (Discrete: 1) and dtype."""
    return F32 if spec.action_dtype == "float64" else spec.action_dtype


def observation_fields(spec: RunSpec, name: str) -> "tuple[Field, ...]":
    """SB3's observation arrays: one of the model's observation shape and dtype (a Discrete Dict entry: one
    int64 index), or one per Dict key, ``name[KEY]``."""
    return tuple(dtype_field(f"{name}[{key}]" if key else name, spec.rows, values, dtype, True)
                 for key, values, dtype in spec.observation.buffer_entries())


def her_fields(spec: RunSpec) -> "tuple[Field, ...]":
    """What SB3 2.9's HerReplayBuffer adds to its DictReplayBuffer: per row and env ``ep_start`` and
    ``ep_length`` (int64) and ``infos``, an object array of 8-byte pointers (the info dicts they point to,
    empty or copied with ``copy_info_dict``, are Python objects and not counted); per env
    ``_current_ep_start`` (int64)."""
    rows = spec.rows
    return (dtype_field("ep_start", rows, 1, "int64"), dtype_field("ep_length", rows, 1, "int64"),
            Field("infos", rows, 64, "object pointers (info dicts not counted)"),
            replace(dtype_field("_current_ep_start", spec.n_envs, 1, "int64"), eager=True))


def sb3_fields(spec: RunSpec, optimize_memory_usage: bool = False) -> "tuple[Field, ...]":
    obs = observation_fields(spec, "observations")
    if not spec.is_replay:
        return (*obs, *_rollout_tail(spec, spec.action_dtype))
    next_obs = () if optimize_memory_usage else observation_fields(spec, "next_observations")
    her = her_fields(spec) if spec.her else ()
    return (*obs, *next_obs, *_replay_tail(spec, _sb3_replay_action_dtype(spec)), *her)


def sb3_optimize_limits(spec: RunSpec) -> "str | None":
    """SB3's DictReplayBuffer (and so HerReplayBuffer) refuses optimize_memory_usage."""
    if spec.obs_space.kind == "dict":
        return ("drops next_observations from a plain ReplayBuffer only: SB3's Dict buffers refuse "
                f"optimize_memory_usage ({spec.obs_space})")
    return None


def half_limits(spec: RunSpec, half: str) -> "str | None":
    """float16 / bfloat16 storage changes float observations only: refused where there are none."""
    if not spec.observation.has_floats:
        return f"stores float observations as {half}; {spec.observation} has none: use packed (stored once) or sb3"
    return None


def just_round_limits(spec: RunSpec) -> "str | None":
    """The authors' uint16 codes hold Box observations of floats, 7 integer bits and hundredths: m <= 2 and
    b <= 127."""
    if not spec.obs_space.float_box:
        return (f"(the authors' buffers) quantizes Box observations of floats; {spec.obs_space} is not one: use "
                "packed (which stores images, integers and Dict entries that are not floats as they are) or sb3")
    quant = spec.quant
    if quant is None:
        return None
    if quant.decimals > 2 or quant.clamp > CLAMP:
        return (f"(uint16: 7 integer bits, hundredths) holds decimals <= 2 and clamp <= {CLAMP:g}, "
                f"got m={quant.decimals}, b={quant.clamp:g}")
    return None


def just_round_fields(spec: RunSpec) -> "tuple[Field, ...]":
    rows = spec.rows
    obs = dtype_field("observations", rows, spec.obs_values, "uint16", True)
    if not spec.is_replay:
        return (obs, *_rollout_tail(spec, F32))
    return (obs, dtype_field("next_observations", rows, spec.obs_values, "uint16", True),
            *_replay_tail(spec, spec.action_dtype))


def stored_once_fields(spec: RunSpec, name: str, rows: int, half: "str | None" = None,
                       eager: bool = False, calibrated: bool = False) -> "tuple[Field, ...]":
    """``validation.buffers.obs_store``'s columns: a Box of floats (or such a Dict entry) as k-bit packed rows (or as
    ``half``, float16 / bfloat16; or ``calibrated`` on ``spec.obs_ranges``'s widths), any other entry (images,
    integers, Discrete) as SB3 stores it; one per Dict key, ``name[KEY]``."""
    if calibrated:
        return calibrated_fields(spec, name, rows, eager)
    fields = []
    for key, values, dtype in spec.observation.buffer_entries():
        label = f"{name}[{key}]" if key else name
        if dtype in FLOAT_DTYPES and half is None:
            fields.extend(packed_rows_fields(label, rows, values, spec.quant.bits, eager))
        else:
            fields.append(replace(dtype_field(label, rows, values, half if dtype in FLOAT_DTYPES else dtype, True),
                                  eager=eager))
    return tuple(fields)


def packed_fields(spec: RunSpec, half: "str | None" = None, calibrated: bool = False) -> "tuple[Field, ...]":
    """The quantized buffers (``validation.buffers``): observations stored once, episode-end next observations
    in a ring of ``terminal_capacity`` rows; floats as k-bit codes, as ``half`` (float16 / bfloat16), or
    ``calibrated`` (mixed widths with an exception store)."""
    rows = spec.rows
    obs = stored_once_fields(spec, "observations", rows, half, calibrated=calibrated)
    if not spec.is_replay:
        return (*obs, *_rollout_tail(spec, spec.action_dtype))
    capacity = terminal_capacity(spec)
    her = her_fields(spec) if spec.her else ()
    return (*obs,
            *stored_once_fields(spec, "terminal_observations", capacity, half, eager=True, calibrated=calibrated),
            replace(dtype_field("terminal_slot", rows, 1, "int32"), eager=True),
            replace(dtype_field("terminal_owner", capacity, 1, "int64"), eager=True),
            *_replay_tail(spec, _sb3_replay_action_dtype(spec)), *her)


def figure2_fields(spec: RunSpec) -> "tuple[Field, ...]":
    """The accounting that reproduces the paper's Figure 2 ratios (2.1x-4.2x PPO, 2.6x-3.9x SAC).

    Observations stored once, at 64 bits (baseline) or at exactly ``bits`` bits per value (no row
    padding); actions float32; SAC: reward and done as float32; PPO: seven float32 scalars per step.
    A search over field counts, dtypes and optimizer state found this the only combination that
    rounds to all four published bounds: with SB3's six rollout scalars Walker2d PPO gives 2.16x
    (2.2x, not 2.1x). Network parameters float32, no optimizer state (set by the caller).
    """
    rows = spec.rows
    if spec.quant is None:
        obs = dtype_field("observations", rows, spec.obs_values, "float64", True)
    else:
        obs = Field("observations", rows, spec.obs_values * spec.quant.bits,
                    f"{spec.obs_values} x {spec.quant.bits} bits (unpadded)", True)
    scalars = ("rewards", "dones") if spec.is_replay else tuple(f"scalar_{i}" for i in range(FIGURE2_PPO_SCALARS))
    return (obs, dtype_field("actions", rows, spec.action_dim, F32),
            *(dtype_field(name, rows, 1, F32) for name in scalars))
