"""Observation spaces as the planner needs them, without gymnasium: a Box of any shape and dtype (a flat
vector or an image), a Discrete, MultiDiscrete or MultiBinary, or a Dict of named entries of those; what
SB3's wrappers make of them
(``VecFrameStack``, ``VecTransposeImage``), which features extractor its policies put in front
(FlattenExtractor, NatureCNN, CombinedExtractor) and what its buffers store per row.

>>> image = ObsSpace.box((96, 96, 3), "uint8")
>>> image, image.image, image.values
(Box(96, 96, 3; uint8), True, 27648)
>>> image.stacked(4).transposed().shape
(12, 96, 96)
>>> goal = ObsSpace.dict({"observation": ObsSpace.box((10,)), "achieved_goal": ObsSpace.box((3,)),
...                       "desired_goal": ObsSpace.box((3,))})
>>> goal.values, goal.flat_dim, goal.dtype_name
(16, 16, 'float32')
>>> ObsSpace.discrete(5).values, ObsSpace.discrete(5).flat_dim  # buffers keep the index, extractors one-hot it
(1, 5)
"""

from dataclasses import KW_ONLY, dataclass

from planner.errors import PlannerError, quote

OBS_KINDS = ("box", "discrete", "multidiscrete", "multibinary", "dict")
ARRAY_KINDS = ("box", "multidiscrete", "multibinary")  # kinds with a shape
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


@dataclass(frozen=True)
class ObsSpace:
    """One observation space.

    :param kind: one of ``OBS_KINDS``
    :param shape: a Box's, MultiDiscrete's (its number of values) or MultiBinary's shape
    :param dtype: the dtype as gymnasium gives it (Discrete, MultiDiscrete: int64; MultiBinary: int8)
    :param n: a Discrete's number of values
    :param nvec: a MultiDiscrete's numbers of values
    :param entries: a Dict's ``(key, ObsSpace)`` pairs, in gymnasium's order (sorted keys for a plain dict)
    :param pixel_bounds: a uint8 Box whose bounds are [0, 255] everywhere: with 3 dims SB3 takes it for an image
        (``is_image_space``); ``ObsSpace.of`` reads the bounds, the constructors assume them
    """

    kind: str
    shape: "tuple[int, ...]" = ()
    dtype: str = "float32"
    _: KW_ONLY
    n: int = 0
    entries: "tuple[tuple[str, ObsSpace], ...]" = ()
    pixel_bounds: bool = True
    nvec: "tuple[int, ...]" = ()

    def __post_init__(self) -> None:
        if self.kind not in OBS_KINDS:
            raise PlannerError(f"observation space kind must be one of {', '.join(OBS_KINDS)}, got {quote(self.kind)}",
                               "obs_space")
        if self.kind in ARRAY_KINDS and (not self.shape or any(isinstance(e, bool) or not isinstance(e, int) or e < 1
                                                         for e in self.shape)):
            raise PlannerError(f"a {self.kind} observation needs a shape of whole numbers >= 1, "
                               f"got {quote(self.shape)}", "obs_space")
        if self.kind == "discrete" and self.n < 1:
            raise PlannerError(f"a Discrete observation needs n >= 1, got {quote(self.n)}", "obs_space")
        if self.kind == "dict":
            if not self.entries:
                raise PlannerError("a Dict observation needs at least one entry", "obs_space")
            for key, entry in self.entries:
                if not isinstance(entry, ObsSpace) or entry.kind == "dict":
                    raise PlannerError(f"Dict entry {key!r} must be an ObsSpace other than a Dict (no nesting), "
                                       f"got {quote(entry)}", "obs_space")

    @classmethod
    def box(cls, shape: "tuple[int, ...] | int", dtype: str = "float32") -> "ObsSpace":
        shape = (shape,) if isinstance(shape, int) else tuple(int(e) for e in shape)
        return cls("box", shape, dtype)

    @classmethod
    def discrete(cls, n: int, dtype: str = "int64") -> "ObsSpace":
        return cls("discrete", (), dtype, n=int(n))

    @classmethod
    def multidiscrete(cls, nvec: "tuple[int, ...]", dtype: str = "int64") -> "ObsSpace":
        return cls("multidiscrete", (len(nvec),), dtype, nvec=tuple(int(v) for v in nvec))

    @classmethod
    def multibinary(cls, shape: "tuple[int, ...] | int", dtype: str = "int8") -> "ObsSpace":
        return cls("multibinary", (shape,) if isinstance(shape, int) else tuple(int(e) for e in shape), dtype)

    @classmethod
    def dict(cls, entries: "dict[str, ObsSpace]") -> "ObsSpace":
        """A Dict; a plain dict's keys are sorted, as gymnasium sorts them."""
        return cls("dict", (), "", entries=tuple(sorted(entries.items())))

    @classmethod
    def of(cls, space: object) -> "ObsSpace":
        """The description of a gymnasium space (read by its class name: gymnasium is not imported)."""
        kind = type(space).__name__.lower()
        if kind == "box":
            dtype = str(space.dtype)
            bounds = dtype == "uint8" and bool((space.low == 0).all()) and bool((space.high == 255).all())
            return cls("box", tuple(int(e) for e in space.shape), dtype, pixel_bounds=bounds)
        if kind == "discrete":
            return cls.discrete(int(space.n), str(space.dtype))
        if kind == "multidiscrete":
            return cls.multidiscrete(tuple(int(v) for v in space.nvec.ravel()), str(space.dtype))
        if kind == "multibinary":
            return cls.multibinary(tuple(int(e) for e in space.shape), str(space.dtype))
        if kind == "dict":
            entries = []
            for key, sub in space.spaces.items():
                if type(sub).__name__.lower() not in OBS_KINDS[:-1]:
                    raise PlannerError(f"Dict observation entry {key!r} is {sub}: the planner sizes Box, Discrete, "
                                       "MultiDiscrete and MultiBinary entries", "obs_space")
                entries.append((str(key), cls.of(sub)))
            return cls("dict", (), "", entries=tuple(entries))
        raise PlannerError(f"observation space {space} is not a Box, Discrete, MultiDiscrete, MultiBinary or a Dict "
                           "of those", "obs_space")

    # --- what it holds ---
    @property
    def values(self) -> int:
        """Values one buffer row stores (SB3's ``get_obs_shape``): a Box its size, a Discrete 1, a Dict the sum."""
        if self.kind == "dict":
            return sum(entry.values for _, entry in self.entries)
        if self.kind == "discrete":
            return 1
        size = 1
        for extent in self.shape:
            size *= extent
        return size

    @property
    def flat_dim(self) -> int:
        """Inputs of a flatten extractor (``get_flattened_obs_dim``): a Discrete is one-hot (n), a
        MultiDiscrete one-hot per value (the sum of nvec)."""
        if self.kind == "dict":
            return sum(entry.flat_dim for _, entry in self.entries)
        if self.kind == "multidiscrete":
            return sum(self.nvec)
        return self.n if self.kind == "discrete" else self.values

    @property
    def dtype_name(self) -> str:
        """The dtype; a Dict's entries' dtypes joined by "/" where they differ."""
        if self.kind != "dict":
            return self.dtype
        return "/".join(dict.fromkeys(entry.dtype for _, entry in self.entries))

    @property
    def flat(self) -> bool:
        """A one-dimensional Box: what ``obs_dim`` alone describes."""
        return self.kind == "box" and len(self.shape) == 1

    @property
    def float_box(self) -> bool:
        """A Box of floats (any shape): what the quantized storages (just-round, packed) can hold."""
        return self.kind == "box" and self.dtype in FLOAT_DTYPES

    @property
    def has_floats(self) -> bool:
        """Whether a buffer row holds floats (a Box of floats, or a Dict with one): what quantizing can change."""
        return any(dtype in FLOAT_DTYPES for _, _, dtype in self.buffer_entries())

    @property
    def image(self) -> bool:
        """SB3's ``is_image_space(check_channels=False)``: a 3-dim uint8 Box with bounds [0, 255]."""
        return self.kind == "box" and len(self.shape) == 3 and self.dtype == "uint8" and self.pixel_bounds

    @property
    def channels_first(self) -> bool:
        """SB3's heuristic: the smallest extent is the channels."""
        return self.shape.index(min(self.shape)) == 0

    def image_with_channels(self) -> bool:
        """``is_image_space(check_channels=True)`` (CombinedExtractor's test): 1, 3 or 4 channels."""
        return self.image and (self.shape[0] if self.channels_first else self.shape[-1]) in (1, 3, 4)

    @property
    def has_images(self) -> bool:
        return self.image or any(entry.image for _, entry in self.entries)

    @property
    def goal_conditioned(self) -> bool:
        """A Dict with observation, achieved_goal and desired_goal (what HerReplayBuffer samples goals from)."""
        return self.kind == "dict" and set(GOAL_KEYS) <= {key for key, _ in self.entries}

    # --- what SB3's wrappers make of it ---
    def transposed(self) -> "ObsSpace":
        """After ``VecTransposeImage`` (SB3 wraps channel-last images, Box or Dict entries): channels first."""
        if self.kind == "dict":
            return ObsSpace("dict", (), "", entries=tuple((k, e.transposed()) for k, e in self.entries))
        if self.image and not self.channels_first:
            h, w, c = self.shape
            return ObsSpace("box", (c, h, w), self.dtype, pixel_bounds=self.pixel_bounds)
        return self

    def stacked(self, n: int) -> "ObsSpace":
        """After ``VecFrameStack(n)``: a channel-first image stacks on its first axis, any other Box on its last;
        a Dict stacks each entry (Box entries only)."""
        if n == 1:
            return self
        if self.kind == "dict":
            return ObsSpace("dict", (), "", entries=tuple((k, e.stacked(n)) for k, e in self.entries))
        if self.kind != "box":
            raise PlannerError(f"frame stacking takes Box observations, got {self}", "frame_stack")
        axis = 0 if self.image and self.channels_first else len(self.shape) - 1
        shape = tuple(e * n if i == axis else e for i, e in enumerate(self.shape))
        return ObsSpace("box", shape, self.dtype, pixel_bounds=self.pixel_bounds)

    def buffer_entries(self) -> "tuple[tuple[str, int, str], ...]":
        """(key, values per row, dtype) of each array SB3's buffers keep: one for a Box, one per Dict key ("")."""
        if self.kind == "dict":
            return tuple((key, entry.values, entry.dtype) for key, entry in self.entries)
        return (("", self.values, self.dtype),)

    def __repr__(self) -> str:
        if self.kind == "dict":
            return "Dict(" + ", ".join(f"{k}: {e!r}" for k, e in self.entries) + ")"
        if self.kind == "discrete":
            return f"Discrete({self.n})"
        if self.kind == "multidiscrete":
            return f"MultiDiscrete({list(self.nvec)})"
        if self.kind == "multibinary":
            return f"MultiBinary({', '.join(str(e) for e in self.shape)})"
        return f"Box({', '.join(str(e) for e in self.shape)}; {self.dtype})"

    __str__ = __repr__

    def as_dict(self) -> dict:
        if self.kind == "dict":
            return {"kind": "dict", "entries": {k: e.as_dict() for k, e in self.entries}}
        if self.kind == "discrete":
            return {"kind": "discrete", "n": self.n, "dtype": self.dtype}
        if self.kind == "multidiscrete":
            return {"kind": "multidiscrete", "nvec": list(self.nvec), "dtype": self.dtype}
        if self.kind == "multibinary":
            return {"kind": "multibinary", "shape": list(self.shape), "dtype": self.dtype}
        return {"kind": "box", "shape": list(self.shape), "dtype": self.dtype, "image": self.image}
