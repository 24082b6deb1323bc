"""Hold a training child to a memory limit with the kernel's own mechanisms, swap off for its group.

In order of preference: cgroup v2 (``memory.max``, ``memory.swap.max``; ``memory.peak``, ``memory.events``), cgroup v1
as root (``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``; ``memory.max_usage_in_bytes``, ``memory.failcnt``,
``memory.oom_control``), or a systemd user scope (``systemd-run --user --scope -p MemoryMax=... -p MemorySwapMax=0``)
for a user with delegation. Not RLIMIT_AS: torch maps far more virtual memory than it uses.

The kernel charges a group for the pages its processes bring in (anonymous memory, page tables, the page cache they
read first), not for their RSS: shared library pages another process faulted in first are in RSS, not in the charge.
"""

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from planner.errors import PlannerError
from planner.profiles import DeviceProfile

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
GROUP_ENV = "PLANNER_VALIDATE_GROUP"  # the group the child must find itself in before it imports torch


def confine_limit(profile: DeviceProfile, runtime_bytes: int) -> int:
    """The group's limit in bytes: the device's own memory for training, this host's runtime in place of the
    profile's. That is what ``planner fit`` leaves models, optimizer and buffer on ``profile`` plus its safety margin
    (the margin is the device's memory too: ``fit`` keeps it back for what it does not model, the board does not),
    plus this host's runtime.

    :param profile: the device profile whose memory the run must fit
    :param runtime_bytes: what this host's training process costs beyond models, optimizer and buffer, in bytes
    """
    available = profile.budget().available
    if available <= 0:
        raise ValueError(f"profile {profile.name} leaves {available:,} B for training: nothing to confine to")
    if runtime_bytes < 0:
        raise ValueError(f"runtime_bytes must be at least 0, got {runtime_bytes:,}")
    return available + profile.margin + runtime_bytes


def _read_int(path: Path) -> "int | None":
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed cgroup file (``memory.events``, ``memory.oom_control``); 0 if absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _write(path: Path, value: "str | int") -> None:
    path.write_text(str(value))


def _rmdir(path: Path, tries: int = 50) -> None:
    """Remove an emptied cgroup folder; the kernel may report it busy for a moment after its last process exits."""
    for _ in range(tries):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    path.rmdir()


class CgroupGroup:
    """A memory cgroup at ``path``: created, given a limit (None: unlimited, to measure), joined, read, removed.
    Subclasses name the files of their cgroup version."""

    mechanism = ""
    swap_note = ""

    def __init__(self, path: Path) -> None:
        """:param path: the group's folder (not there yet)"""
        self.path = path
        self.limit_bytes: "int | None" = None

    def command(self, argv: "list[str]") -> "list[str]":
        """The command that starts ``argv`` (a cgroup needs no wrapper: ``attach`` moves the process).

        :param argv: the child's command
        """
        return argv

    def create(self, limit_bytes: "int | None") -> None:
        """Make the group and set its limit, swap off.

        :param limit_bytes: the limit in bytes, or None for none (the group only measures)
        """
        self.path.mkdir()
        self.limit_bytes = limit_bytes
        try:
            self._limit(limit_bytes)
        except BaseException:
            self.remove()
            raise

    def attach(self, pid: int) -> None:
        """Move process ``pid`` into the group.

        :param pid: the process to move
        """
        _write(self.path / "cgroup.procs", pid)

    def usage(self) -> dict:
        """The group's limit, peak and OOM kills as report.json keeps them."""
        return {"mechanism": self.mechanism, "group": str(self.path), "limit_bytes": self.limit_bytes,
                "peak_bytes": self.peak(), "oom_kills": self.oom_kills(), "oom_killed": self.oom_kills() > 0,
                "swap": self.swap_note}

    def remove(self) -> None:
        """Kill what is left in the group and remove it."""
        if not self.path.exists():
            return
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), 9)
        _rmdir(self.path)

    def _limit(self, limit_bytes: "int | None") -> None:
        raise NotImplementedError

    def peak(self) -> "int | None":
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError


class CgroupV2(CgroupGroup):
    mechanism = "cgroup v2"
    swap_note = "memory.swap.max 0"

    def _limit(self, limit_bytes: "int | None") -> None:
        _write(self.path / "memory.max", "max" if limit_bytes is None else limit_bytes)
        if (self.path / "memory.swap.max").exists():
            _write(self.path / "memory.swap.max", 0)
        else:
            self.swap_note = "no memory.swap.max (swap not accounted by this kernel)"

    def peak(self) -> "int | None":
        return _read_int(self.path / "memory.peak")

    def oom_kills(self) -> int:
        return _keyed(self.path / "memory.events", "oom_kill")


class CgroupV1(CgroupGroup):
    mechanism = "cgroup v1"
    swap_note = "memory.memsw.limit_in_bytes = the limit"

    def _limit(self, limit_bytes: "int | None") -> None:
        if limit_bytes is None:
            return
        _write(self.path / "memory.limit_in_bytes", limit_bytes)
        if (self.path / "memory.memsw.limit_in_bytes").exists():
            _write(self.path / "memory.memsw.limit_in_bytes", limit_bytes)
        else:  # swapaccount=0: no memory+swap limit; swappiness 0 keeps the group's pages out of swap
            _write(self.path / "memory.swappiness", 0)
            self.swap_note = "memory.swappiness 0 (no memory.memsw.limit_in_bytes: swap accounting off)"
        self.limit_bytes = _read_int(self.path / "memory.limit_in_bytes")  # the kernel rounds it to pages

    def peak(self) -> "int | None":
        return _read_int(self.path / "memory.max_usage_in_bytes")

    def oom_kills(self) -> int:
        return _keyed(self.path / "memory.oom_control", "oom_kill")

    def usage(self) -> dict:
        return {**super().usage(), "failcnt": _read_int(self.path / "memory.failcnt")}


class SystemdScope(CgroupV2):
    """A transient user scope: systemd creates the cgroup (v2, delegated) when the command starts; the group is found
    from the child's /proc/PID/cgroup and read there."""

    mechanism = "systemd-run --user --scope"
    swap_note = "MemorySwapMax=0"

    def __init__(self, path: Path, systemd_run: str = "systemd-run", root: Path = CGROUP_ROOT) -> None:
        """:param path: a name for the scope (its last part)
        :param systemd_run: the systemd-run executable
        :param root: where cgroup v2 is mounted"""
        super().__init__(path)
        self.unit, self.systemd_run, self.root = f"{path.name}.scope", systemd_run, root

    def create(self, limit_bytes: "int | None") -> None:
        self.limit_bytes = limit_bytes

    def command(self, argv: "list[str]") -> "list[str]":
        limit = "infinity" if self.limit_bytes is None else str(self.limit_bytes)
        return [self.systemd_run, "--user", "--scope", "--quiet", f"--unit={self.unit}", "-p", f"MemoryMax={limit}",
                "-p", "MemorySwapMax=0", "--", *argv]

    def attach(self, pid: int) -> None:
        """Find the scope's cgroup (systemd put ``pid`` there before it ran the command)."""
        for _ in range(100):
            try:
                line = next(x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if x.startswith("0::"))
            except (OSError, StopIteration):
                line = ""
            if line.endswith(self.unit):
                self.path = self.root / line[3:].lstrip("/")
                return
            time.sleep(0.02)
        raise PlannerError(f"systemd-run did not start the scope {self.unit} for process {pid}", "confine")

    def remove(self) -> None:
        subprocess.run(["systemctl", "--user", "stop", self.unit], capture_output=True, check=False)


@dataclass(frozen=True)
class Confinement:
    """A mechanism found on this machine: it makes groups of one kind under ``parent``."""

    mechanism: str
    parent: Path
    systemd_run: str = "systemd-run"

    def group(self, name: str) -> CgroupGroup:
        """A group called ``name`` (not created yet).

        :param name: the group's folder name (or the scope's unit name)
        """
        kind = {"cgroup v2": CgroupV2, "cgroup v1": CgroupV1}.get(self.mechanism)
        if kind is None:
            return SystemdScope(self.parent / name, self.systemd_run, self.parent)
        return kind(self.parent / name)


def _own_cgroup(self_cgroup: Path, controller: str) -> str:
    """This process's cgroup path in the hierarchy of ``controller`` ("" for v2's unified one), "/" if unknown."""
    try:
        for line in self_cgroup.read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                return path
    except (OSError, ValueError):
        pass
    return "/"


def _v2(root: Path) -> "tuple[Path | None, str]":
    """cgroup v2 at ``root`` with the memory controller given to its children, writable: (parent, ""), else (None,
    what is missing)."""
    if not (root / "cgroup.controllers").exists():
        return None, f"no cgroup v2 at {root}"
    if "memory" not in (root / "cgroup.subtree_control").read_text().split():
        return None, f"cgroup v2 at {root} does not give its children the memory controller"
    if not os.access(root, os.W_OK):
        return None, f"cgroup v2 at {root} is not writable (root can; or use systemd-run)"
    return root, ""


def _v1(root: Path, self_cgroup: Path) -> "tuple[Path | None, str]":
    """cgroup v1's memory hierarchy under ``root``, writable: (parent: this process's own memory group where it is
    writable, else the hierarchy's top; ""), else (None, what is missing)."""
    top = root / "memory"
    if not (top / "memory.limit_in_bytes").exists():
        return None, f"no cgroup v1 memory controller at {top}"
    own = top / _own_cgroup(self_cgroup, "memory").lstrip("/")
    parent = own if own.is_dir() and os.access(own, os.W_OK) else top
    if not os.access(parent, os.W_OK):
        return None, f"cgroup v1 memory at {top} is not writable (needs root)"
    return parent, ""


def _systemd(systemd_run: str, root: Path) -> "tuple[Path | None, str]":
    """A user scope with a memory limit starts: (the v2 root, ""), else (None, what is missing)."""
    if shutil.which(systemd_run) is None:
        return None, f"no {systemd_run}"
    try:
        done = subprocess.run([systemd_run, "--user", "--scope", "--quiet", "-p", "MemoryMax=1G",
                               "-p", "MemorySwapMax=0", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{systemd_run} --user --scope: {exc}"
    if done.returncode:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"{systemd_run} --user --scope fails ({why[:120]})"
    return root, ""


def confinement(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP,
                systemd_run: str = "systemd-run") -> Confinement:
    """The first mechanism this machine offers to hold a process to a memory limit with swap off; a PlannerError
    saying what each one lacks where none does.

    :param root: where the cgroup file systems are mounted
    :param self_cgroup: this process's /proc/self/cgroup (its own v1 memory group is the parent where writable)
    :param systemd_run: the systemd-run executable to try last
    """
    missing = []
    parent, why = _v2(root)
    if parent is not None:
        return Confinement("cgroup v2", parent)
    missing.append(why)
    parent, why = _v1(root, self_cgroup)
    if parent is not None:
        return Confinement("cgroup v1", parent)
    missing.append(why)
    parent, why = _systemd(systemd_run, root)
    if parent is not None:
        return Confinement("systemd-run --user --scope", parent, systemd_run)
    missing.append(why)
    raise PlannerError("cannot confine a run's memory here: " + "; ".join(missing), "confine")


def wait_confined(timeout_s: float = 10.0, self_cgroup: Path = SELF_CGROUP) -> None:
    """In the child: wait until this process is in the group named in ``GROUP_ENV`` (the parent moves it right after
    the spawn), so nothing it allocates later escapes the limit; exit with a message if it never is.

    :param timeout_s: how long to wait
    :param self_cgroup: this process's /proc/self/cgroup
    """
    name = os.environ.get(GROUP_ENV)
    if not name:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(line.rstrip().endswith("/" + name) or line.rstrip().endswith("/" + name + ".scope")
               for line in self_cgroup.read_text().splitlines()):
            return
        time.sleep(0.005)
    raise SystemExit(f"not moved into the memory group {name} within {timeout_s:g} s")
