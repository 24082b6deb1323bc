"""Where trials run: a local pool of processes (one trial per fresh interpreter, ``workers`` at a time), or Ray
(a local Ray started here, or a cluster joined at ``address``; one CPU per trial, a GPU where the trial asks).

Both write the same files: a local trial writes its own; a Ray trial sends its records to this process
through a Ray queue (the workers may be other machines), and this process writes them.
"""

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from planner.errors import PlannerError
from validation.harness.child import PARENT_ENV, module_command
from validation.study.grid import Trial
from validation.study.progress import Progress
from validation.study.results import LOGS, TrialFile, end_of, failure, trial_path

POLL_S = 0.5


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_local(trials: "list[Trial]", out: Path, workers: int, progress: Progress) -> None:
    """Each trial in a fresh ``python -m validation.study.trial``, at most ``workers`` at once, one torch thread
    each; a trial process that exits without an end record (killed, crashed) gets a failed one here."""
    (out / LOGS).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, PARENT_ENV: str(os.getpid()), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    queue, running = list(trials), {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                trial = queue.pop(0)
                log = out / LOGS / f"{trial.id}.stderr.log"
                with open(log, "wb") as stderr:
                    child = subprocess.Popen(module_command("validation.study.trial", trial.to_json(), str(out)),
                                             env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                             start_new_session=True)
                running[child] = trial
                progress.started(trial.id)
            time.sleep(POLL_S)
            for child in [c for c in running if c.poll() is not None]:
                trial = running.pop(child)
                path = trial_path(out, trial.id)
                end = end_of(path)
                if end is None:
                    how = (f"killed by {signal.Signals(-child.returncode).name}" if child.returncode < 0
                           else f"exit status {child.returncode}")
                    end = failure(f"the trial's process ended without a result ({how}): "
                                  f"{_last_line(out / LOGS / f'{trial.id}.stderr.log')}")
                    sink = TrialFile(path, fresh=False)
                    sink.write(end)
                    sink.close()
                progress.ended(trial.id, end)
    finally:
        for child in running:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def _ray_trial(trial_json: str, queue) -> dict:
    """A trial in a Ray worker: its records go to the driver through ``queue``."""
    import torch

    from validation.study.trial import run_trial

    torch.set_num_threads(1)
    trial = Trial.from_json(trial_json)
    return run_trial(trial, lambda record: queue.put((trial.id, record)))


PROBE_S = 3.0  # how long an address may take to accept a TCP connection


def probe(address: str) -> None:
    """Refuse, within :data:`PROBE_S`, an address ``HOST:PORT`` (or ``ray://HOST:PORT``) at which nothing accepts a
    TCP connection: ``ray.init`` would retry it for minutes. Other forms (``auto``) are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    where = f"cannot join the Ray cluster at address {address}"
    if not 1 <= int(port) <= 65535:
        raise PlannerError(f"{where}: port {int(port)} is not a TCP port (1..65535; a Ray head listens on 6379 by "
                           "default)", "address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S).close()
    except OSError as exc:  # refused, timed out, an unknown host
        raise PlannerError(f"{where}: no connection within {PROBE_S:g} s ({exc.strerror or exc}); expected a running "
                           "Ray head there (ray start --head, port 6379 by default)", "address") from None


def smallest_memory(nodes: "list[dict]") -> "int | None":
    """The least memory Ray gives tasks (its ``memory`` resource) on a live node with CPUs, of ``ray.nodes()``; None
    where no such node has joined yet (an autoscaling cluster).

    >>> smallest_memory([{"Alive": True, "Resources": {"CPU": 4.0, "memory": 8e9}},
    ...                  {"Alive": True, "Resources": {"CPU": 2.0, "memory": 2e9}},
    ...                  {"Alive": False, "Resources": {"CPU": 2.0, "memory": 1e9}},
    ...                  {"Alive": True, "Resources": {"memory": 5e8}}])
    2000000000
    """
    return min((int(node["Resources"].get("memory", 0)) for node in nodes
                if node.get("Alive") and node["Resources"].get("CPU", 0) > 0), default=None)


def connect_ray(workers: "int | None", address: "str | None") -> "tuple[int, int | None]":
    """Start a local Ray of ``workers`` CPUs, or join the cluster at ``address``; returns how many trials to keep
    in flight (``workers``, or the cluster's CPUs) and the smallest node's memory (:func:`smallest_memory`). A
    cluster that cannot be reached is one error naming it."""
    if address:
        probe(address)
    import ray

    # The workers start in an empty folder of their own: Ray otherwise puts this process's folder first on their
    # sys.path, and a source checkout there (whose cython_core has no compiled modules) would shadow the
    # installed package. No INFO lines on stderr.
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="planner-study-") as empty:
            if address:
                ray.init(address=address, runtime_env={"working_dir": empty}, **quiet)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, runtime_env={"working_dir": empty}, **quiet)
    except (ConnectionError, ValueError) as exc:  # unreachable, or an address Ray cannot parse
        raise PlannerError(f"cannot join the Ray cluster at address {address}: {exc}".splitlines()[0][:300],
                           "address") from None
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1))), smallest_memory(ray.nodes())


def disconnect_ray() -> None:
    """Leave the Ray that :func:`connect_ray` started or joined (a local one shuts down)."""
    import ray

    ray.shutdown()


def run_ray(trials: "list[Trial]", out: Path, limit: int, progress: Progress) -> None:
    """The trials as Ray tasks (``max_calls=1``: each in a fresh worker process), at most ``limit`` at once, on the
    Ray that :func:`connect_ray` started or joined (shut down or left at the end); the records each task sends
    are written here as they come."""
    import ray
    from ray.util.queue import Queue

    files: "dict[str, TrialFile]" = {}
    try:
        queue, pending, running = Queue(), list(trials), {}
        tasks = {gpus: ray.remote(num_cpus=1, num_gpus=gpus, max_calls=1)(_ray_trial) for gpus in (0, 1)}

        def drain() -> None:
            for trial_id, record in queue.get_nowait_batch(queue.size()):
                if record.get("kind") == "start" or trial_id not in files:
                    if trial_id in files:
                        files[trial_id].close()
                    files[trial_id] = TrialFile(trial_path(out, trial_id))
                files[trial_id].write(record)

        while pending or running:
            while pending and len(running) < limit:
                trial = pending.pop(0)
                running[tasks[int(trial.gpu)].remote(trial.to_json(), queue)] = trial
                progress.started(trial.id)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            drain()
            for ref in ready:
                trial = running.pop(ref)
                try:
                    end = ray.get(ref)
                except Exception as exc:  # the worker died, or Ray could not run the task
                    if _stopped(exc):
                        raise
                    end = failure(f"the Ray task ended without a result: {type(exc).__name__}: {exc}")
                    if trial.id not in files:
                        files[trial.id] = TrialFile(trial_path(out, trial.id))
                    files[trial.id].write(end)
                files.pop(trial.id).close()
                progress.ended(trial.id, end)
    except SystemError as exc:
        stop = _stopped(exc)
        if stop is None:
            raise
        raise stop from None
    finally:
        for handle in files.values():
            handle.close()
        ray.shutdown()


def _stopped(exc: "BaseException | None") -> "BaseException | None":
    """The :class:`validation.harness.runner.Stopped` behind ``exc``: a stop signal's handler raises it inside Ray's
    compiled code, which hands it back wrapped (a SystemError caused by it)."""
    from validation.harness.runner import Stopped

    seen = set()
    while exc is not None and not isinstance(exc, Stopped) and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc if isinstance(exc, Stopped) else None
