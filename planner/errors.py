"""The one exception type for user errors; the CLI turns it into one line and exit status 2.

Library code names the parameters it refuses (``buffer_size``, ``decimals``); the CLI, which knows
which flag set each parameter, says the flag instead:

>>> error = PlannerError("buffer_size must be a whole number >= 1, got 0", "buffer_size")
>>> str(error), error.for_flags({"buffer_size": "--buffer-size"})
('buffer_size must be a whole number >= 1, got 0', '--buffer-size must be a whole number >= 1, got 0')
"""

import re


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
