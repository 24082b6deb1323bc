"""One training run in a fresh interpreter (``validation.harness.child``), and what describes the machine it ran on.

Used by the harness (baseline and quantized runs) and by calibration (the probe runs).
"""

import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from tqdm import tqdm

from validation.harness.child import PARENT_ENV, module_command
from validation.harness.confine import GROUP_ENV, CgroupGroup, Confinement
from validation.harness.predict import MMAP_THRESHOLD
from validation.harness.runconfig import RunConfig

POLL_S = 0.5  # how often the progress bar reads the child's step
STDERR_NAME = "stderr.log"


def machine() -> dict:
    memory = psutil.virtual_memory()
    return {"platform": platform.platform(), "arch": platform.machine(), "cpu": platform.processor() or "unknown",
            "cpu_count": psutil.cpu_count(), "total_memory_bytes": memory.total, "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("justround-planner", "numpy", "torch", "stable-baselines3", "gymnasium", "mujoco", "memray", "psutil"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def latest_step(run_dir: Path) -> int:
    """The step of the newest sample in a run's timeseries.csv (0 before the first)."""
    try:
        with open(run_dir / "timeseries.csv", "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 512))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return 0
    for line in reversed(lines[:-1] if len(lines) > 1 else lines):
        fields = line.split(",")
        if len(fields) > 1 and fields[1].isdigit():
            return int(fields[1])
    return 0


class Stopped(BaseException):
    """A stop signal reached the validation: "interrupted" for SIGINT (Ctrl-C), "killed" for SIGTERM and SIGHUP
    (ended from outside: a scheduler, a shutdown, a closed terminal). ``run`` is what the run stopped part-way
    had measured (its run.json), once ``run_child`` has put it there. A BaseException, as KeyboardInterrupt
    is, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal}")
        self.signum, self.run = signum, None

    @property
    def status(self) -> str:
        return "interrupted" if self.signum == signal.SIGINT else "killed"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_children: "set[subprocess.Popen]" = set()
_group_ids = itertools.count()


def _kill(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group (the child and anything it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


@contextlib.contextmanager
def stopping():
    """Inside: SIGINT, SIGTERM and SIGHUP kill every training child's process group at once and raise
    ``Stopped`` in the main thread (the first one only: later ones while the report is written are ignored)."""
    fired = []

    def handler(signum, frame) -> None:
        for child in list(_children):
            _kill(child)
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def read_run(run_dir: Path, child: subprocess.Popen) -> dict:
    """The run.json ``child`` wrote (never an earlier run's: the pid must be the child's), with its exit
    status; "killed" (and the signal) if a signal ended it, "failed" (and its last stderr line) if it exited
    non-zero, "not started" if it wrote nothing."""
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("pid") != child.pid:
        data = {"marks": [], "measured": {}, "status": "not started"}
    data["returncode"] = child.returncode
    if child.returncode and child.returncode < 0:
        data["status"], data["signal"] = "killed", signal.Signals(-child.returncode).name
    elif child.returncode:
        data["status"] = "failed"
        try:
            lines = (run_dir / STDERR_NAME).read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        data["error"] = lines[-1][:300] if lines else ""
    return data


def run_child(config: RunConfig, run_dir: Path, label: "str | None" = None, confine: "Confinement | None" = None,
              limit_bytes: "int | None" = None) -> dict:
    """Train ``config`` in a fresh interpreter; return its run.json, marked killed or failed if it did not finish.

    The child runs in a process group of its own and dies with this process (``validation.harness.child``); its
    stderr goes to ``stderr.log`` in ``run_dir``. A progress bar (tqdm, on stderr) follows the child's steps
    from this process, reading the child's sample file, so that drawing it costs the measured process nothing.
    On ``Stopped`` the child's group is killed and what it measured is put on the exception.

    :param config: what to train
    :param run_dir: the run's folder
    :param label: what the progress bar calls the run (default its name; the calibration probe says it is one)
    :param confine: a memory group mechanism: the child runs in a group of its own, moved there right after the spawn
        (before it imports torch), removed afterwards whatever happens; its limit, peak and OOM kills go in the run's
        ``confinement``, and a run the limit's OOM killer ended is "killed-by-limit"
    :param limit_bytes: the group's limit (None: no limit, the group only measures)
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").unlink(missing_ok=True)
    if confine is None:
        return _run_child(config, run_dir, label, None)
    group = confine.group(f"planner-validate-{os.getpid()}-{next(_group_ids)}")
    group.create(limit_bytes)
    try:
        run = _run_child(config, run_dir, label, group)
    except Stopped as stop:
        if stop.run is not None:
            stop.run["confinement"] = group.usage()
        raise
    finally:
        usage = group.usage()
        group.remove()
    run["confinement"] = usage
    if usage["oom_killed"] and run["status"] in ("killed", "failed"):
        run["status"] = "killed-by-limit"
    return run


def _run_child(config: RunConfig, run_dir: Path, label: "str | None", group: "CgroupGroup | None") -> dict:
    """``run_child`` in ``group`` (created) or none."""
    config_path = run_dir / "config.json"
    config_path.write_text(config.to_json())
    # a fixed mmap threshold: every large array is a fresh, lazily committed mapping (glibc's dynamic
    # threshold would otherwise hand the buffer heap pages that torch freed, already resident)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), PARENT_ENV: str(os.getpid())}
    argv = module_command("validation.harness.child", str(config_path), str(run_dir))
    if group is not None:
        env[GROUP_ENV] = group.path.name
        argv = group.command(argv)
    with open(run_dir / STDERR_NAME, "wb") as stderr:
        child = subprocess.Popen(argv, env=env, stderr=stderr, start_new_session=True)
    _children.add(child)
    try:
        if group is not None:
            group.attach(child.pid)  # the child waits for this before it imports torch (confine.wait_confined)
        with tqdm(total=config.total_steps if config.steps else None, desc=f"  {label or config.name}", unit="step",
                  file=sys.stderr, mininterval=1.0, dynamic_ncols=True) as bar:
            while _wait(child, POLL_S) is None:
                bar.update(max(0, latest_step(run_dir) - bar.n))
            bar.update(max(0, latest_step(run_dir) - bar.n))
    except Stopped as stop:
        _kill(child)
        child.wait()
        stop.run = read_run(run_dir, child)
        stop.run.pop("signal", None)  # the SIGKILL was ours
        stop.run.update(status=stop.status, stopped_by=stop.signal)
        raise
    finally:
        if child.poll() is None:
            _kill(child)
            child.wait()
        _children.discard(child)
    return read_run(run_dir, child)


def _wait(child: subprocess.Popen, seconds: float) -> "int | None":
    """The child's exit status, or None if it is still running after ``seconds``."""
    try:
        return child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None
