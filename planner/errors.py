"""The one exception type for user errors; the CLI turns it into one line and exit status 2.

Library code names the parameters it refuses (``buffer_size``, ``decimals``); the CLI, which knows
which flag set each parameter, says the flag instead:

>>> error = PlannerError("buffer_size must be a whole number >= 1, got 0", "buffer_size")
>>> str(error), error.for_flags({"buffer_size": "--buffer-size"})
('buffer_size must be a whole number >= 1, got 0', '--buffer-size must be a whole number >= 1, got 0')
"""

import math
import re
import reprlib

QUOTED_CHARS = 80  # the most of a value any message shows


class _Quoter(reprlib.Repr):
    """reprlib's bounded repr; an integer too long to show is named by its digits (str() refuses past 4,300)."""

    def repr_int(self, value: int, level: int) -> str:
        if value.bit_length() <= 3 * QUOTED_CHARS:
            return repr(value)
        exact = value.bit_length() < 14_000
        digits = len(str(abs(value))) if exact else int(value.bit_length() * math.log10(2)) + 1
        return f"{'a negative' if value < 0 else 'an'} integer of {'' if exact else 'about '}{digits:,} digits"


_REPR = _Quoter()
_REPR.maxstring = _REPR.maxother = QUOTED_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


class PlannerError(ValueError):
    """Bad input, an unknown name or an impossible configuration; ``params`` name the parameters at fault."""

    def __init__(self, message: str, *params: str) -> None:
        super().__init__(message)
        self.params = params

    def for_flags(self, flags: "dict[str, str]") -> str:
        """The message with each parameter's name (its first occurrence as a word) replaced by its flag.

        >>> PlannerError("plot needs matplotlib: pip install 'x[plot]'", "plot").for_flags({"plot": "--plot"})
        "--plot needs matplotlib: pip install 'x[plot]'"
        """
        message = str(self)
        for param in self.params:
            if param in flags:
                message = re.sub(rf"(?<![^\s(]){re.escape(param)}(?![^\s,:;)])", flags[param], message, count=1)
        return message


def one_line(text: str) -> str:
    """``text`` with every newline or other control character written as its escape: one line, always.

    >>> one_line("a\\nb\\tc")
    'a\\\\nb\\\\tc'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def quote(value: object, limit: int = QUOTED_CHARS) -> str:
    """``repr(value)`` for a message: one line, at most about ``limit`` characters (the middle of a longer
    one is left out as ``...``); nested and shared values are shown a few levels and items deep.

    >>> quote("x" * 1000)[:12], len(quote("x" * 1000)) <= 80
    ("'xxxxxxxxxxx", True)
    >>> quote(10**5000), quote([10**400])
    ('an integer of about 5,001 digits', '[an integer of 401 digits]')
    """
    return _middle_out(one_line(_REPR.repr(value)), limit)


def tidy(message: str, limit: int = QUOTED_CHARS) -> str:
    """A message as one line in which no word (a run without spaces: a path, a value) is longer than
    about ``limit`` characters: the last guard of what the CLI prints, whatever built the message.

    >>> line = tidy("bad path " + "a" * 200 + "\\nnext")
    >>> "\\n" in line, len(line) < 100, line.endswith("\\\\nnext")
    (False, True, True)
    """
    return re.sub(rf"\S{{{limit + 1},}}", lambda word: _middle_out(word.group(0), limit), one_line(message))


def _middle_out(text: str, limit: int) -> str:
    half = (limit - 3) // 2
    return f"{text[:half]}...{text[-half:]}" if len(text) > limit else text
