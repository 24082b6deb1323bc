"""The one exception type for user errors; the CLI turns it into one line and exit status 2."""


class PlannerError(Exception):
    """A user-facing error: bad input, unknown name, impossible configuration."""
