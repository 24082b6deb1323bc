"""No function of the planner, validation or the kernels takes more than 6 arguments by position: past the first
few, a call names what it passes. Read from the source with ``ast``: every ``def`` (``self``/``cls`` not counted)
and every dataclass's generated ``__init__`` (its fields up to ``KW_ONLY``; none with ``kw_only=True``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("planner", "validation", "cython_core")
MOST = 6
# Saved buffers of formats 0 to 3 rebuild a CodeLayout from its 7 fields, by position (CodeLayout.__reduce__).
EXEMPT = {"cython_core/uniform.py: CodeLayout"}


def _is_dataclass(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)) == "dataclass"


def _kw_only(decorator: ast.expr) -> bool:
    return isinstance(decorator, ast.Call) and any(
        k.arg == "kw_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in decorator.keywords)


def _init_fields(cls: ast.ClassDef) -> int:
    """The fields a dataclass's ``__init__`` takes by position."""
    count = 0
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        annotation = ast.unparse(node.annotation)
        if "KW_ONLY" in annotation:
            break
        settings = node.value.keywords if isinstance(node.value, ast.Call) else []
        left_out = any(k.arg in ("init", "kw_only") and ast.unparse(k.value) == ("False" if k.arg == "init" else "True")
                       for k in settings)
        count += not (left_out or "ClassVar" in annotation)
    return count


def positional_counts(path: Path) -> "dict[str, int]":
    """``"name": positional parameters`` of every def (``Class.method``) and dataclass in ``path``."""
    counts: "dict[str, int]" = {}

    def visit(node: ast.AST, owner: "str | None") -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                dataclass = next((d for d in child.decorator_list if _is_dataclass(d)), None)
                if dataclass is not None:
                    counts[child.name] = 0 if _kw_only(dataclass) else _init_fields(child)
                visit(child, child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = child.args.posonlyargs + child.args.args
                static = any(ast.unparse(d) == "staticmethod" for d in child.decorator_list)
                counts[f"{owner}.{child.name}" if owner else child.name] = len(params) - (owner is not None
                                                                                          and not static)
                visit(child, None)
            else:
                visit(child, owner)

    visit(ast.parse(path.read_text()), None)
    return counts


SOURCES = sorted(path.relative_to(ROOT).as_posix() for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("source", SOURCES)
def test_no_function_takes_more_than_6_arguments_by_position(source):
    offenders = {name: count for name, count in positional_counts(ROOT / source).items()
                 if count > MOST and f"{source}: {name}" not in EXEMPT}
    assert offenders == {}, f"{source}: make the parameters past the first {MOST} keyword-only"


def test_the_count_sees_methods_dataclasses_and_keyword_only_markers(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("from dataclasses import KW_ONLY, dataclass, field\n"
                      "def f(a, b, c, d, e, f, g, *, h): ...\n"
                      "class C:\n    def m(self, a, b, /, c, d, e, f, g): ...\n"
                      "    @staticmethod\n    def s(a, b, c, d, e, f, g): ...\n"
                      "    @classmethod\n    def k(cls, a, *args, **kwargs): ...\n"
                      "@dataclass(frozen=True)\nclass D:\n    a: int\n    b: int\n    c: int = field(init=False)\n"
                      "    d: int = 0\n    _: KW_ONLY\n    e: int = 0\n"
                      "@dataclass(kw_only=True)\nclass E:\n    a: int\n    b: int\n")
    assert positional_counts(source) == {"f": 7, "C.m": 7, "C.s": 7, "C.k": 1, "D": 3, "E": 0}
    assert EXEMPT <= {f"{name}: {cls}" for name in SOURCES for cls in positional_counts(ROOT / name)}
