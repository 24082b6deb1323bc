"""Action spaces as the planner needs them, without gymnasium: the kind, SB3's buffer columns, the
policy head's outputs and the dtype.

>>> ActionSpace.discrete(3), ActionSpace.discrete(3).dim, ActionSpace.discrete(3).dtype
(Discrete(3), 1, 'int64')
>>> space = ActionSpace.multidiscrete((3, 4, 2))
>>> space, space.dim, space.n
(MultiDiscrete(3 actions, 9 choices), 3, 9)
"""

from dataclasses import dataclass

from planner.errors import PlannerError, quote

KINDS = {"box": "Box", "discrete": "Discrete", "multidiscrete": "MultiDiscrete", "multibinary": "MultiBinary"}


@dataclass(frozen=True)
class ActionSpace:
    """One action space.

    :param kind: "box", "discrete", "multidiscrete" or "multibinary"
    :param dim: the columns of SB3's buffers (``get_action_dim``): Box its size, Discrete 1, MultiDiscrete
        ``len(nvec)``, MultiBinary n
    :param n: the outputs of the policy's action head: Box its size (the means), Discrete n, MultiDiscrete
        ``sum(nvec)`` (one logit per choice), MultiBinary n
    :param dtype: the space's dtype as gymnasium gives it (Box float32 unless declared float64, Discrete and
        MultiDiscrete int64, MultiBinary int8). SB3's RolloutBuffer stores actions in it; its ReplayBuffer
        casts float64 to float32 and keeps the others (:func:`planner.layouts.sb3_fields`).
    """

    kind: str
    dim: int
    n: int
    dtype: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PlannerError(f"action space kind must be one of {', '.join(KINDS)}, got {quote(self.kind)}",
                               "action_space")
        for name in ("dim", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlannerError(f"{KINDS[self.kind]} action space {name} must be a whole number >= 1, "
                                   f"got {quote(value)}", "action_space")
        if self.kind == "discrete" and self.dim != 1:
            raise PlannerError(f"a Discrete action is one column, got dim={self.dim}", "action_space")

    @classmethod
    def box(cls, dim: int, dtype: str = "float32") -> "ActionSpace":
        return cls("box", dim, dim, dtype)

    @classmethod
    def discrete(cls, n: int, dtype: str = "int64") -> "ActionSpace":
        return cls("discrete", 1, n, dtype)

    @classmethod
    def multidiscrete(cls, nvec: "tuple[int, ...] | list[int]", dtype: str = "int64") -> "ActionSpace":
        nvec = [int(v) for v in nvec]
        if not nvec or min(nvec) < 1:
            raise PlannerError(f"MultiDiscrete needs choices >= 1 per action, got {quote(nvec)}", "action_space")
        return cls("multidiscrete", len(nvec), sum(nvec), dtype)

    @classmethod
    def multibinary(cls, n: int, dtype: str = "int8") -> "ActionSpace":
        return cls("multibinary", n, n, dtype)

    @classmethod
    def of(cls, space: object) -> "ActionSpace":
        """The description of a gymnasium space (read by its class name: gymnasium is not imported)."""
        kind = type(space).__name__.lower()
        dtype = str(space.dtype)
        if kind == "box":
            size = 1
            for extent in space.shape:
                size *= int(extent)
            return cls.box(size, dtype)
        if kind == "discrete":
            return cls.discrete(int(space.n), dtype)
        if kind == "multidiscrete":
            return cls.multidiscrete([int(v) for v in space.nvec.ravel()], dtype)
        if kind == "multibinary" and isinstance(space.n, int):
            return cls.multibinary(space.n, dtype)
        raise PlannerError(f"action space {space} is not one of Box, Discrete, MultiDiscrete, MultiBinary(n)",
                           "action_space")

    def __repr__(self) -> str:
        title = KINDS[self.kind]
        if self.kind == "multidiscrete":
            return f"{title}({self.dim} actions, {self.n} choices)"
        if self.kind == "box" and self.dtype not in ("float32",):
            return f"{title}({self.dim}, {self.dtype})"
        return f"{title}({self.n})"

    __str__ = __repr__

    def as_dict(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "n": self.n, "dtype": self.dtype}
