"""rl-zoo3 hyper-parameter files: the entry of one env, read safely, and what of it sizes a run.

rl-zoo3 keeps one YAML file per algorithm (``rl_zoo3/hyperparams/<algo>.yml``) with one top-level entry
per env id. An entry's ``policy_kwargs`` is a Python expression in a string; it is parsed here as data,
never evaluated:

>>> parse_policy_kwargs("dict(log_std_init=-3, net_arch=[400, 300], activation_fn=nn.ReLU)")
{'log_std_init': -3, 'net_arch': [400, 300], 'activation_fn': 'nn.ReLU'}
>>> entry = {"buffer_size": 300000, "policy_kwargs": "dict(net_arch=[400, 300])", "gamma": 0.98}
>>> settings("sac", entry)  # doctest: +NORMALIZE_WHITESPACE
Settings(buffer_size=300000, n_steps=None, n_envs=None, net=(400, 300), frame_stack=None, ignored=('gamma',),
         not_modelled=())
"""

import ast
import os
from dataclasses import dataclass
from pathlib import Path

from planner.algorithms import algorithm
from planner.errors import QUOTED_CHARS, PlannerError, one_line, quote
from planner.units import MAX_COUNT
from planner.yamlio import read_yaml

SHOWN_IDS = 8  # env ids named when the asked one is missing

# Keys of an entry that size nothing the planner counts (schedules, losses, exploration, run length).
# Everything else the planner does not read is reported as not modelled: it may change the real footprint.
NOT_MODELLED = ("env_wrapper", "vec_env_wrapper", "normalize", "use_sde", "batch_size",
                "replay_buffer_class", "replay_buffer_kwargs", "optimize_memory_usage", "callback")
SIZE_FREE_POLICY_KWARGS = ("activation_fn", "log_std_init", "use_expln", "ortho_init", "squash_output", "clip_mean",
                           "normalize_images", "n_critics", "n_quantiles", "net_arch")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What an entry sets that the planner uses (None: not set), and the keys it leaves aside."""

    buffer_size: "int | None"
    n_steps: "int | None"
    n_envs: "int | None"
    net: "tuple[int, ...] | None"
    frame_stack: "int | None"
    ignored: "tuple[str, ...]"  # keys that size nothing the planner counts
    not_modelled: "tuple[str, ...]"  # keys that may change the real footprint, not in the prediction


def _where(path: "str | os.PathLike", env_id: "str | None" = None) -> str:
    return f"hyperparams {path}" + (f" [{env_id}]" if env_id else "")


def load_file(path: "str | os.PathLike") -> dict:
    """The whole file as a mapping of env id to entry (anchors and ``<<:`` merges resolved, within
    :mod:`planner.yamlio`'s bounds); a missing, oversized or malformed file is refused."""
    data = read_yaml(path, _where(path), "hyperparams", aliases=True)
    if not isinstance(data, dict) or not data:
        raise PlannerError(f"{_where(path)}: expected rl-zoo3's format, a mapping of env ids to hyper-parameters, "
                           f"got {type(data).__name__}", "hyperparams")
    return data


def load_entry(path: "str | os.PathLike", env_id: str) -> dict:
    """The entry of ``env_id`` in the rl-zoo3 file ``path`` (anchors and ``<<:`` merges resolved)."""
    data = load_file(path)
    if env_id not in data:
        ids = [str(key) for key in data if key not in ("default", "atari")]
        shown = ", ".join(key if len(key) <= QUOTED_CHARS and key.isprintable() else quote(key)
                          for key in ids[:SHOWN_IDS]) + (f", ... ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")
        raise PlannerError(f"{_where(path)} has no entry for env {quote(env_id)}; it has {shown or 'none'}",
                           "hyperparams", "env")
    entry = data[env_id]
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise PlannerError(f"{_where(path, env_id)}: expected a mapping of hyper-parameters, got "
                           f"{type(entry).__name__}", "hyperparams")
    return {str(key): value for key, value in entry.items()}


def _literal(node: ast.AST, key: str) -> object:
    """A policy_kwargs value as data: literals, lists, tuples, dicts, ``dict(k=v)``, dotted names as strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(item, key) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise PlannerError(f"{key}: '**' unpacking is not allowed", "policy_kwargs")
        return {_literal(k, key): _literal(v, key) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            raise PlannerError(f"{key}: '**' unpacking is not allowed", "policy_kwargs")
        return {kw.arg: _literal(kw.value, key) for kw in node.keywords}
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        dotted = _literal(node.value, key)
        if isinstance(node.value, (ast.Name, ast.Attribute)):
            return f"{dotted}.{node.attr}"
    what = type(node).__name__.lower()
    if isinstance(node, ast.Call):
        what = f"a call to {ast.unparse(node.func)[:40]}"
    raise PlannerError(f"{key}: only literals, lists, dicts, dict(...) and names such as nn.ReLU are read, "
                       f"not {what}", "policy_kwargs")


def parse_policy_kwargs(text: str, key: str = "policy_kwargs") -> dict:
    """rl-zoo3's ``policy_kwargs`` string as a dict, parsed as data (never evaluated); names such as
    ``nn.ReLU`` are kept as strings. Anything else (other calls, lambdas, operators, subscripts) is refused.

    >>> parse_policy_kwargs("dict(net_arch=dict(pi=[256, 256], qf=[400, 300]))")
    {'net_arch': {'pi': [256, 256], 'qf': [400, 300]}}
    """
    if not isinstance(text, str):
        raise PlannerError(f"{key} must be a string such as \"dict(net_arch=[256, 256])\", got "
                           f"{type(text).__name__}", "policy_kwargs")
    if len(text) > 10_000:
        raise PlannerError(f"{key}: {len(text):,} characters; refused", "policy_kwargs")
    try:
        value = _literal(ast.parse(text.strip(), mode="eval").body, key)
    except PlannerError:
        raise
    except SyntaxError as exc:
        raise PlannerError(f"{key}: not a Python expression ({one_line(exc.msg)})", "policy_kwargs") from None
    except (RecursionError, ValueError):  # "------1", "a.a.a...b": nested past the parser's stack
        raise PlannerError(f"{key}: nested too deeply to read", "policy_kwargs") from None
    if not isinstance(value, dict):
        raise PlannerError(f"{key} must be dict(...) or {{...}}, got {type(value).__name__}", "policy_kwargs")
    return value


def _sizes(value: object, what: str) -> "tuple[int, ...]":
    if (not isinstance(value, (list, tuple))
            or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_COUNT for v in value)):
        raise PlannerError(f"policy_kwargs {what} must be a list of positive layer sizes (at most 2^53), "
                           f"got {quote(value)} "
                           "(SB3 >= 1.8's forms: [64, 64], dict(pi=[...], vf=[...]), dict(pi=[...], qf=[...]))",
                           "policy_kwargs")
    return tuple(value)


def net_from_policy_kwargs(algo: str, kwargs: dict) -> "tuple[int, ...] | None":
    """The hidden sizes ``net`` of every MLP of ``algo`` (None: SB3's defaults), from SB3's net_arch forms.

    Separate policy and value/Q sizes are taken only where they are equal, or equal to ``algo``'s defaults;
    ``n_critics`` and ``n_quantiles`` only at ``algo``'s values.
    """
    entry = algorithm(algo)
    for name, default in (("n_critics", entry.n_critics), ("n_quantiles", entry.n_quantiles)):
        if name in kwargs and kwargs[name] != default:
            has = f"{algo} has {default}" if default else f"{algo} has none"
            raise PlannerError(f"policy_kwargs {name}={quote(kwargs[name])} is not supported yet: the planner sizes "
                               f"{algo}'s default ({has})", "policy_kwargs")
    arch = kwargs.get("net_arch")
    if arch is None:
        return None
    if not isinstance(arch, dict):
        return _sizes(arch, "net_arch")
    other = "vf" if entry.on_policy else "qf"
    unknown = sorted(set(arch) - {"pi", other}, key=str)
    if unknown:
        raise PlannerError(f"policy_kwargs net_arch: {algo} takes keys pi and {other}, got "
                           f"{', '.join(map(str, unknown))}", "policy_kwargs")
    if not entry.on_policy and set(arch) != {"pi", "qf"}:
        raise PlannerError(f"policy_kwargs net_arch: {algo} needs both pi and qf", "policy_kwargs")
    pi, vf = _sizes(arch.get("pi", []), "net_arch pi"), _sizes(arch.get(other, []), f"net_arch {other}")
    if pi == vf:
        return pi
    if pi == entry.net and vf == (entry.critic_net or entry.net):
        return None  # SB3's own defaults (CrossQ: pi 256,256 and qf 1024,1024)
    raise PlannerError(f"policy_kwargs net_arch: different pi and {other} sizes ({','.join(map(str, pi))} and "
                       f"{','.join(map(str, vf))}) are not supported yet: the planner takes one net for every MLP",
                       "policy_kwargs")


def _count(value: object, key: str) -> int:
    """A whole number >= 1 (at most 2^53) from YAML (``!!float 1e6`` included)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise PlannerError(f"{key} must be a whole number >= 1 (at most 2^53), got {quote(value)}", key)
    return value


def settings(algo: str, entry: dict) -> Settings:
    """What ``entry`` (one env's rl-zoo3 hyper-parameters) sets for a run of ``algo``; errors name the key."""
    on_policy = algorithm(algo).on_policy
    own, foreign = ("n_steps", "buffer_size") if on_policy else ("buffer_size", "n_steps")
    if foreign in entry:
        raise PlannerError(f"{foreign} is not a setting of {algo} ({'on' if on_policy else 'off'}-policy: it takes "
                           f"{own}); is this {algo}'s file?", foreign)
    size = None if entry.get(own) is None else _count(entry[own], own)
    n_envs = None if entry.get("n_envs") is None else _count(entry["n_envs"], "n_envs")
    net, not_modelled = None, [key for key in entry if key in NOT_MODELLED]
    if entry.get("policy_kwargs") is not None:
        kwargs = parse_policy_kwargs(entry["policy_kwargs"])
        net = net_from_policy_kwargs(algo, kwargs)
        not_modelled += [f"policy_kwargs.{k}" for k in kwargs if k not in SIZE_FREE_POLICY_KWARGS]
    frame_stack = None if entry.get("frame_stack") is None else _count(entry["frame_stack"], "frame_stack")
    used = {own, "n_envs", "policy_kwargs", "frame_stack", *NOT_MODELLED}
    return Settings(buffer_size=None if on_policy else size, n_steps=size if on_policy else None, n_envs=n_envs,
                    net=net, frame_stack=frame_stack, ignored=tuple(key for key in entry if key not in used),
                    not_modelled=tuple(not_modelled))


def zoo_file(algo: str) -> Path:
    """``rl_zoo3/hyperparams/<algo>.yml`` of the installed rl-zoo3."""
    from importlib.resources import files

    try:
        root = files("rl_zoo3")
    except ModuleNotFoundError:
        raise PlannerError("zoo reads the hyper-parameters of an installed rl-zoo3: pip install rl_zoo3 "
                           "(or give hyperparams FILE.yml)", "zoo", "hyperparams") from None
    path = Path(str(root / "hyperparams" / f"{algo}.yml"))
    if not path.is_file():
        raise PlannerError(f"zoo: the installed rl-zoo3 has no hyper-parameters for {algo} ({path})", "zoo")
    return path


@dataclass(frozen=True)
class Applied:
    """An entry applied to a run: what it set, what a flag overrode, what was left aside."""

    path: str
    env_id: str
    used: "dict[str, object]"  # parameter -> value the run takes from the file
    overridden: "dict[str, object]"  # parameter -> the file's value, replaced by an explicit flag
    settings: Settings

    def as_dict(self) -> dict:
        return {"file": self.path, "env": self.env_id, "used": self.used, "overridden": self.overridden,
                "ignored": list(self.settings.ignored), "not_modelled": list(self.settings.not_modelled)}

    def line(self, flags: "dict[str, str] | None" = None) -> str:
        """One line: ``hyper-parameters from FILE [ENV]: buffer_size 300000, net 400,300 (ignored: ...)``."""
        flags = flags or {}
        shown = [f"{key} {_show(value)}" for key, value in self.used.items()]
        shown += [f"{key} {_show(value)} overridden by {flags.get(key, key)}" for key, value in self.overridden.items()]
        text = f"hyper-parameters from {self.path} [{self.env_id}]: "
        text += ", ".join(shown) if shown else "sets no sizes: SB3's defaults apply"
        if self.settings.not_modelled:
            text += f" (not modelled, may change the footprint: {', '.join(self.settings.not_modelled)})"
        if self.settings.ignored:
            text += f" (ignored: {', '.join(self.settings.ignored)})"
        return text


def _show(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def apply(path: "str | os.PathLike", env_id: str, algo: str, explicit: "dict[str, object]") -> Applied:
    """The entry of ``env_id`` in ``path`` for a run of ``algo``; ``explicit`` maps the parameters given
    otherwise (flags) to their values (None: not given), and those win over the file."""
    entry = load_entry(path, env_id)
    try:
        found = settings(algo, entry)
    except PlannerError as exc:
        raise PlannerError(f"{_where(path, env_id)}: {exc}", "hyperparams") from None
    used, overridden = {}, {}
    for key in ("buffer_size", "n_steps", "n_envs", "net", "frame_stack"):
        value = getattr(found, key)
        if value is None:
            continue
        if explicit.get(key) is None:
            used[key] = value
        else:
            overridden[key] = value
    return Applied(str(path), env_id, used, overridden, found)
