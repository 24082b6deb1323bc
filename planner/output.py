"""Output files (csv, plot, out): refused up front when unusable, written whole or not at all.

Errors name the parameter (``param``) that gave the path; the CLI says which flag that was.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from planner.errors import PlannerError


def check_output_path(path: "str | Path", param: str, suffix: "str | None" = None) -> Path:
    """Refuse an output path before anything is computed or written: a folder, a wrong suffix, a folder that
    does not exist or where no file can be created (a read-only folder or file system, a name too long)."""
    path = Path(path)
    if suffix and path.suffix.lower() != suffix:
        raise PlannerError(f"{param} {path}: expected a {suffix} file name", param)
    try:
        if path.is_dir():
            raise PlannerError(f"{param} {path}: is a folder, expected a file name", param)
        _refuse_special(path, param)
        if not path.parent.is_dir():
            raise PlannerError(f"{param} {path}: folder {path.parent} does not exist", param)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PlannerError(f"{param} {path}: cannot write there ({exc.strerror or exc})", param) from None
    return path


def _refuse_special(path: Path, param: str) -> None:
    """A device, pipe or socket at ``path`` (or behind a symlink there) is refused: a file renamed over it
    would replace it (``/dev/null`` as root), and writing into it is not writing a file whole."""
    if path.exists() and not path.is_file():
        raise PlannerError(f"{param} {path}: not a regular file (a device, a pipe or a socket); give a file name",
                           param)


def _temp_prefix(path: Path) -> str:
    """The start of a temporary file's name beside ``path``: short enough that any valid name stays valid."""
    return f".{path.name[:64]}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: "str | Path", data: bytes, param: str) -> Path:
    """Write ``data`` to a fresh temporary file beside ``path``, then rename it over ``path``.

    The temporary name is unique and created exclusively (never an existing file or a symlink), so
    concurrent writers never tear each other's files; on any failure it is removed and ``path`` is
    left as it was. The file gets the usual permissions (0666 less the umask).
    """
    path = Path(path)
    partial = None
    try:
        _refuse_special(path, param)
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".partial")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            handle.write(data)
        os.replace(partial, path)
        partial = None
    except OSError as exc:
        raise PlannerError(f"{param} {path}: cannot write: {exc.strerror or exc}", param) from None
    finally:
        if partial is not None:
            with contextlib.suppress(OSError):
                os.unlink(partial)
    return path
