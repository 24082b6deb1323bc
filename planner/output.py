"""Output files (--csv, --plot): refused up front when unusable, written whole or not at all."""

import contextlib
import os
from pathlib import Path

from planner.errors import PlannerError


def check_output_path(path: "str | Path", option: str, suffix: "str | None" = None) -> Path:
    """Refuse an output path before anything is computed or written."""
    path = Path(path)
    if path.is_dir():
        raise PlannerError(f"{option} {path}: is a folder, expected a file name")
    if suffix and path.suffix.lower() != suffix:
        raise PlannerError(f"{option} {path}: expected a {suffix} file name")
    if not path.parent.is_dir():
        raise PlannerError(f"{option} {path}: folder {path.parent} does not exist")
    return path


def write_atomic(path: "str | Path", data: bytes, option: str) -> Path:
    """Write ``data`` to a ``.NAME.partial`` sibling (normal permissions), then rename it over ``path``.

    On any failure the partial file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    except OSError as exc:
        raise PlannerError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            if partial.is_file():
                partial.unlink()
    return path
