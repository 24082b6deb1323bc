"""Reading YAML bounded in every direction: device profiles and rl-zoo3 hyper-parameter files come through here.

A file over ``MAX_BYTES`` is refused before it is parsed; so is a document nested deeper than ``MAX_DEPTH``,
an integer of more than ``MAX_INT_DIGITS`` digits, a key given twice in one mapping (checked in linear time)
and an anchor or alias (``&name``, ``*name``), unless the caller takes them (rl-zoo3's files share settings
through anchors and ``<<:`` merges): then the document with its aliases expanded may hold at most
``MAX_NODES`` nodes, ``MAX_DEPTH`` deep, counted in one linear pass, so an alias bomb is refused before
anything is built from it.
Every refusal is one :class:`PlannerError` line naming the file and, where there is one, the line.

>>> try:
...     parse_yaml("a: &x [1, 2]\\nb: *x\\n", "demo.yaml")
... except PlannerError as error:
...     print(error)
demo.yaml: not valid YAML (line 1: anchors (&name) and aliases (*name) are not read here; write the value out)
>>> parse_yaml("a: &x [1, 2]\\nb: *x\\n", "demo.yaml", aliases=True)
{'a': [1, 2], 'b': [1, 2]}
"""

import os
import stat

import yaml
import yaml.composer

from planner.errors import PlannerError, one_line, quote

MAX_BYTES = 1_000_000
MAX_DEPTH = 64  # mappings and lists inside one another
MAX_INT_DIGITS = 4_300  # Python's own limit for int(text)
MAX_NODES = 100_000  # with aliases expanded; rl-zoo3's largest file has a few thousand
MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse(problem: str, mark: "yaml.Mark | None") -> yaml.MarkedYAMLError:
    return yaml.constructor.ConstructorError(None, None, problem, mark)


if yaml.__with_libyaml__:
    class _Events(yaml.composer.Composer, yaml._yaml.CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """yaml.SafeLoader with libyaml's scanner and parser (4 times faster) under PyYAML's own composer,
        so that :class:`_BoundedLoader` can refuse nodes as they are composed."""

        def __init__(self, stream: "str | bytes") -> None:
            yaml._yaml.CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
else:  # PyYAML without libyaml: all in Python
    _Events = yaml.SafeLoader


class _BoundedLoader(_Events):
    """A safe loader that refuses what :mod:`planner.yamlio` refuses; ``aliases`` says whether ``*name`` is read."""

    aliases = False

    def __init__(self, stream: "str | bytes") -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: "yaml.Node | None", index: object) -> yaml.Node:
        event = self.peek_event()
        if not self.aliases and (isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None)):
            raise _refuse("anchors (&name) and aliases (*name) are not read here; write the value out",
                          event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _refuse(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        if self.aliases:
            _check_expansion(node)
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_INT_DIGITS:
            raise _refuse(f"an integer of {len(node.value):,} digits (at most {MAX_INT_DIGITS:,} are read)",
                          node.start_mark)
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """A key given twice in one mapping is refused (not the last one winning); keys merged in by ``<<:``
        may be overridden, as YAML's merge says."""
        first_at: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_at.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: SafeConstructor refuses it below
            if first is not key_node:
                raise _refuse(f"key {quote(key)} given twice (first at line {first.start_mark.line + 1})",
                              key_node.start_mark)
        return super().construct_mapping(node, deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


class _AliasLoader(_BoundedLoader):
    aliases = True


def _children(node: yaml.Node) -> "list[yaml.Node]":
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_expansion(root: "yaml.Node | None") -> None:
    """Refuse a document whose aliases expand to over MAX_NODES nodes or MAX_DEPTH levels, or refer to a node
    that holds them; one pass over the composed nodes (each shared node is counted once, then reused)."""
    size: "dict[int, int]" = {}
    depth: "dict[int, int]" = {}
    on_path: "set[int]" = set()
    stack = [(root, False)] if root is not None else []
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
                raise _refuse(f"aliases expand to more than {MAX_NODES:,} values or {MAX_DEPTH} levels",
                              node.start_mark)
        elif key in on_path:
            raise _refuse("an alias refers to a value that holds it (an endless value)", node.start_mark)
        elif key not in size:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


def parse_yaml(text: "str | bytes", where: str, *params: str, aliases: bool = False) -> object:
    """The one document in ``text``; ``where`` (the file as the user gave it) starts every message and
    ``params`` name the parameter that gave it."""
    if len(text) > MAX_BYTES:
        raise PlannerError(f"{where}: {len(text):,} bytes; files over {MAX_BYTES:,} bytes are refused", *params)
    try:
        return yaml.load(text, Loader=_AliasLoader if aliases else _BoundedLoader)
    except yaml.reader.ReaderError as exc:
        raise PlannerError(f"{where}: not valid YAML (byte {exc.position}: {one_line(exc.reason)})", *params) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise PlannerError(f"{where}: not valid YAML ({line}{one_line(problem)})", *params) from None


def read_yaml(path: "str | os.PathLike", where: str, *params: str, aliases: bool = False) -> object:
    """The document of the YAML file ``path``, read with the bounds above (a file over MAX_BYTES is not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO would block a plain open
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise PlannerError(f"{where}: is a folder, not a YAML file", *params)
            if not stat.S_ISREG(info.st_mode):
                raise PlannerError(f"{where}: not a regular file", *params)
            if info.st_size > MAX_BYTES:
                raise PlannerError(f"{where}: {info.st_size:,} bytes; files over {MAX_BYTES:,} bytes are refused",
                                   *params)
            text = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PlannerError(f"{where}: no such file", *params) from None
    except IsADirectoryError:
        raise PlannerError(f"{where}: is a folder, not a YAML file", *params) from None
    except OSError as exc:
        raise PlannerError(f"{where}: cannot be read ({exc.strerror or exc})", *params) from None
    return parse_yaml(text, where, *params, aliases=aliases)
