"""The error raised when observations hold NaN or inf and the spec says so."""


class NonFiniteError(ValueError):
    """``count`` non-finite values (NaN/inf) in ``x``; the first at ``x[row, dim]``; nothing was written."""

    def __init__(self, count: int, row: int, dim: int) -> None:
        self.count, self.row, self.dim = count, row, dim
        super().__init__(
            f"{count} non-finite value(s) (NaN/inf) in x, the first at x[{row}, {dim}]; nothing was written "
            "(build the CodeLayout with nonfinite='code' to store them as a fixed code)")
