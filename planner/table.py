"""Plain-text tables for the terminal: left-aligned text, right-aligned numbers.

>>> print(render([["a", "1"], ["bb", "22"]], headers=["name", "n"]))
name   n
----  --
a      1
bb    22
"""


import re

_NUMBER = re.compile(r"^[~<>+-]?\s*[0-9][0-9,]*(\.[0-9]+)?(e[+-]?[0-9]+)?\s?(%|x|[KMGT]i?B|B|s|us|ms|bits)?$")


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text))


def render(rows: "list[list[str]]", headers: "list[str]") -> str:
    """Columns padded to their widest cell; a column whose cells all start with a number is right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(_is_number(r[i]) or r[i] in ("", "-") for r in cells) for i in range(len(headers))]

    def line(values: "list[str]") -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])
