"""Environment catalog: observation and action dimensions of the MuJoCo locomotion tasks.

The paper's ``-v3`` ids need mujoco-py, which current gymnasium cannot load, so their dimensions
are listed here (gymnasium's MuJoCo documentation); other ids are looked up through gymnasium
when installed. Ant: v3 has 27 + 84 contact forces; v4 drops the contact forces (111 with
``use_contact_forces=True``); v5 keeps them but not the root body's ``cfrc_ext``.

>>> lookup_env("Ant-v3").obs_dim
111
"""

import importlib.util
from dataclasses import KW_ONLY, dataclass

from planner.actions import ActionSpace
from planner.errors import PlannerError
from planner.observations import ObsSpace


@dataclass(frozen=True)
class EnvDims:
    """An env's sizes; ``action_space`` and ``obs_space`` where gymnasium gave them (None: Box(action_dim) of
    action_dtype, a flat Box(obs_dim) of obs_dtype), to pass on as :class:`planner.runspec.RunSpec`'s
    ``action_space`` and ``obs_space``. ``obs_dim``: the values one step stores (a Dict: all keys)."""

    env_id: str
    obs_dim: int
    action_dim: int
    obs_dtype: str = "float64"
    action_dtype: str = "float32"
    _: KW_ONLY
    action_space: "ActionSpace | None" = None
    obs_space: "ObsSpace | None" = None

    def as_dict(self) -> dict:
        out = {"id": self.env_id, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
               "obs_dtype": self.obs_dtype, "action_dtype": self.action_dtype}
        if self.obs_space is not None:
            out["obs_space"] = self.obs_space.as_dict()
        return out


_DIMS = {  # name: ({version: obs_dim}, action_dim)
    "Walker2d": ({"v3": 17, "v4": 17, "v5": 17}, 6),
    "HalfCheetah": ({"v3": 17, "v4": 17, "v5": 17}, 6),
    "Hopper": ({"v3": 11, "v4": 11, "v5": 11}, 3),
    "Ant": ({"v3": 111, "v4": 27, "v5": 105}, 8),
    "Humanoid": ({"v3": 376, "v4": 376, "v5": 348}, 17),
}

CATALOG = {
    f"{name}-{version}": EnvDims(f"{name}-{version}", obs, action_dim)
    for name, (versions, action_dim) in _DIMS.items()
    for version, obs in versions.items()
}


# env id prefixes whose envs another package registers: (prefixes, module, pip package)
PACKAGES = (
    (("Fetch", "HandManipulate", "HandReach", "AntMaze", "PointMaze", "Adroit", "FrankaKitchen", "Kitchen"),
     "gymnasium_robotics", "gymnasium-robotics"),
    (("CarRacing", "BipedalWalker", "LunarLander"), "Box2D", "gymnasium[box2d]"),
    (("ALE/",), "ale_py", "ale-py"),
)


def training_id(env_id: str) -> str:
    """The id to train on with current gymnasium: ``-v3`` maps to ``-v5`` (same task, needs no mujoco-py)."""
    return env_id[:-2] + "v5" if env_id.endswith("-v3") and env_id in CATALOG else env_id


def missing(env_id: str) -> str:
    """A hint naming the package an env id needs when it is not installed ('' if none is known missing).

    >>> missing("no_such_module_here:Thing-v0")
    ': module no_such_module_here is not installed (the part of the id before ":" is imported)'
    """
    if ":" in env_id:
        module = env_id.split(":", 1)[0]
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return f": module {module} is not installed (the part of the id before \":\" is imported)"
        return ""
    for prefixes, module, package in PACKAGES:
        if env_id.startswith(prefixes) and importlib.util.find_spec(module) is None:
            return f": {env_id.split('-')[0]} comes with {package} (pip install {package}), which is not installed"
    return ""


def lookup_env(env_id: str) -> EnvDims:
    """Dimensions of ``env_id``: from the catalog, else from gymnasium (if installed): any Box observation
    (vectors, images) or a Dict of Box / Discrete entries, and the action space."""
    if env_id in CATALOG:
        return CATALOG[env_id]
    known = ", ".join(sorted(CATALOG))
    try:
        import gymnasium
    except ImportError:
        raise PlannerError(f"env {env_id!r} is unknown: known without gymnasium: {known}", "env") from None
    try:
        env = gymnasium.make(env_id)
    except Exception as exc:  # gymnasium raises several types for unknown or unloadable ids
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise PlannerError(f"env {env_id!r} cannot be made ({type(exc).__name__}: {first_line}){missing(env_id)}; "
                           f"known offline: {known}", "env") from None
    try:
        try:
            obs = ObsSpace.of(env.observation_space)
            space = ActionSpace.of(env.action_space)
        except PlannerError as exc:
            raise PlannerError(f"env {env_id!r}: {exc}; give obs_dim and action_dim instead", "env") from None
        return EnvDims(env_id, obs.values, space.dim, obs.dtype_name, space.dtype, action_space=space, obs_space=obs)
    finally:
        env.close()
