"""A validation's report folder: fresh (or cleared on request) and written by one validation at a time.

The validation holds an ``flock`` on ``validate.lock`` (which names its pid) from before it writes anything
until its report is final. The kernel drops the lock when the process ends in any way, SIGKILL included,
so a report still saying "running" in a folder whose lock nobody holds was left by a validation that died
(``validation.harness.report.read_report`` says "killed"). The lock file is removed when the validation ends.
A study's folder is held the same way (:func:`hold`, ``study.lock``).
"""

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from planner.errors import PlannerError

LOCK_NAME = "validate.lock"


def contents(out: Path) -> "list[str]":
    """The names in ``out`` other than the lock file (nothing if it does not exist)."""
    try:
        return sorted(name for name in os.listdir(out) if name != LOCK_NAME)
    except (FileNotFoundError, NotADirectoryError):
        return []


def holder(out: Path, lock_name: str = LOCK_NAME) -> "int | None":
    """The pid of the live process holding ``out``'s lock file ``lock_name`` (0 if its pid is unreadable), or
    None if none is."""
    try:
        fd = os.open(out / lock_name, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _in_use(out: Path, pid: "int | None", what: str = "validation") -> PlannerError:
    who = f"pid {pid}" if pid else "another process"
    return PlannerError(f"out {out}: another {what} ({who}) is writing into it; wait for it to end "
                        "or choose another folder", "out")


def check_fresh(out: Path, overwrite: bool, describe=None) -> None:
    """Refuse, before anything is created, an ``out`` that is not a folder, that a live validation holds, or
    that holds anything while ``overwrite`` is off. ``describe(out)`` may say what an earlier run left there."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise PlannerError(f"out {out}: exists and is not a folder", "out")
    pid = holder(out)
    if pid is not None:
        raise _in_use(out, pid)
    names = contents(out)
    if names and not overwrite:
        entries = f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}, e.g. {names[0]!r}"
        what = (describe(out) if describe else None) or entries
        raise PlannerError(f"out {out}: not empty ({what}); choose a fresh folder, or overwrite to clear it first",
                           "out", "overwrite")


def _clear(out: Path) -> None:
    for name in contents(out):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def hold(out: Path, lock_name: str = LOCK_NAME, what: str = "validation"):
    """Create ``out`` and hold its lock file ``lock_name`` (naming this pid) while the block runs, refusing a
    folder that another live ``what`` holds; on leaving, remove the lock file and release the lock."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / lock_name
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _in_use(out, holder(out, lock_name), what) from None
            try:  # the holder before us may have removed the file between our open and our lock: retry
                if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        raise PlannerError(f"out {out}: cannot create the {what}'s folder: {exc.strerror or exc}", "out") from None
    try:
        yield out
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def claim(out: Path, overwrite: bool):
    """Hold ``out`` for one validation: create it, lock it (refusing one another validation holds), clear it
    if ``overwrite`` (else refuse it non-empty), and on leaving remove the lock file and release the lock."""
    check_fresh(out, overwrite)
    with hold(out):
        if overwrite:
            try:
                _clear(out)
            except OSError as exc:
                raise PlannerError(f"out {out}: cannot clear it: {exc.strerror or exc}", "out") from None
        elif contents(out):  # filled between the check and the lock
            raise PlannerError(f"out {out}: not empty; choose a fresh folder, or overwrite to clear it first",
                               "out", "overwrite")
        yield out
