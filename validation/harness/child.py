"""One validation run in its own process: ``python -m validation.harness.child CONFIG.json OUTDIR``.

Trains with SB3 / sb3-contrib on a gymnasium env and measures as it goes: psutil RSS/USS on a sampler
thread (``timeseries.csv``), phase marks, the buffer's committed pages, memray attribution of the
model/buffer construction, timings and episode returns. ``run.json`` is rewritten at every phase
mark, so a run killed part-way leaves what it had measured with status "running" (the parent then
marks it killed). On Linux the child dies with the validation that started it (``die_with_parent``).
"""

import ctypes
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from planner.algorithms import algorithm
from planner.defaults import is_on_policy
from planner.envs import training_id
from validation.harness.confine import wait_confined
from validation.harness.measure import (
    MemorySampler,
    buffer_arrays,
    buffer_bytes,
    heap_placed,
    memray_attribution,
    resident_bytes,
)
from validation.harness.predict import MMAP_THRESHOLD
from validation.harness.report import write_json
from validation.harness.runconfig import RunConfig

PARENT_ENV = "PLANNER_VALIDATE_PARENT"  # the pid of the validation that started this child
_RUN_MODULE = ("import runpy, sys\n"
               "if sys.path and sys.path[0] == '':\n"
               "    sys.path.append(sys.path.pop(0))\n"
               "runpy.run_module({!r}, run_name='__main__', alter_sys=True)")


def module_command(module: str, *args: str) -> "list[str]":
    """The command that runs ``python -m module args`` with the installed packages ahead of the current folder.

    ``-m`` puts the current folder first on sys.path: started from a source checkout, whose ``cython_core`` has
    no compiled modules, the child would import that copy instead of the installed package. Here the folder
    moves to the end, where an env's module kept there is still found.
    """
    return [sys.executable, "-c", _RUN_MODULE.format(module), *args]


class RunLog:
    """run.json, rewritten atomically at each mark."""

    def __init__(self, out: Path, config: RunConfig, sampler: MemorySampler) -> None:
        self.path, self.sampler = out / "run.json", sampler
        self.data = {"config": json.loads(config.to_json()), "pid": os.getpid(), "status": "running",
                     "marks": [], "measured": {}}

    def mark(self, name: str, **measured) -> None:
        """Record the mark ``name``: its sample (in timeseries.csv, of phase ``name``, as every sample after it until
        the next mark; in run.json with its file-backed pages, ``file_bytes``) and ``measured``."""
        self.sampler.phase = name
        info = self.sampler.sample()
        self.data["marks"].append({"name": name, "t_s": time.perf_counter() - self.sampler.t0,
                                   "step": self.sampler.step, "rss_bytes": info.rss, "uss_bytes": info.uss,
                                   "file_bytes": info.shared})
        self.data["measured"].update(measured)
        self.write()

    def write(self) -> None:
        self.data["measured"]["peak_rss_bytes"] = self.sampler.peak_rss
        write_json(self.path, self.data)


def build_model(config: RunConfig, env, **overrides):
    """The stable-baselines3 / sb3-contrib model of ``config.algo`` (:data:`planner.algorithms.ALGORITHMS`), its
    MlpPolicy (RecurrentPPO: MlpLstmPolicy) with SB3's defaults, ``config.buffer_size`` as n_steps or replay
    capacity, and the buffer of ``config.storage``, on ``config.device``; networks not built yet.
    ``overrides``: keyword arguments of the model that replace these (``planner study``: the buffer's kwargs,
    learning_starts)."""
    import importlib

    entry = algorithm(config.algo)
    model_class = getattr(importlib.import_module(entry.package), entry.class_name)
    kwargs = dict(seed=config.seed, device=config.device, verbose=0, _init_setup_model=False,
                  **config.buffer_arguments())
    if entry.on_policy:
        kwargs.update(n_steps=config.buffer_size)
    else:
        kwargs.update(buffer_size=config.buffer_size, learning_starts=config.learning_starts)
    return model_class(entry.policies[0], env, **{**kwargs, **overrides})


def fill_from_pool(model, pool, rows: int, at_row) -> None:
    """Write ``rows`` transitions into ``model``'s replay buffer through its own ``add()``, cycling through ``pool``'s
    (:class:`validation.scan.Transitions`), as ``learn()`` stores them: a Box action scaled to [-1, 1]
    (``policy.scale_action``), done where the episode ended, a timeout where it was truncated alone. ``at_row(i)``
    is called after each row i (1-based)."""
    from gymnasium import spaces

    buffer = model.replay_buffer
    actions = model.policy.scale_action(pool.actions) if isinstance(model.action_space, spaces.Box) else pool.actions
    dones = pool.terminated | pool.truncated
    timeouts = pool.truncated & ~pool.terminated
    infos = ([{"TimeLimit.truncated": False}], [{"TimeLimit.truncated": True}])  # one each: the buffers only read them
    for i in range(rows):
        j = i % len(pool)
        buffer.add(pool.observations[j:j + 1], pool.next_observation(j)[None], actions[j:j + 1],
                   pool.rewards[j:j + 1], dones[j:j + 1], infos[int(timeouts[j])])
        at_row(i + 1)


def module_buffer_bytes(model) -> int:
    """Bytes of the policy's module buffers with dim > 0 (CrossQ's BatchRenorm statistics; the 0-dim step
    counters are left out, as the planner leaves them out)."""
    return sum(b.numel() * b.element_size() for b in model.policy.buffers() if b.dim() > 0)


def model_and_optimizer_bytes(model) -> "tuple[int, int]":
    """Bytes of every parameter (policy, targets, entropy coefficient) and of every optimizer's state."""
    import torch

    params = {id(p): p for p in model.policy.parameters()}
    if isinstance(getattr(model, "log_ent_coef", None), torch.Tensor):
        params[id(model.log_ent_coef)] = model.log_ent_coef
    optimizers = {id(m.optimizer): m.optimizer for m in model.policy.modules()
                  if isinstance(getattr(m, "optimizer", None), torch.optim.Optimizer)}
    if getattr(model, "ent_coef_optimizer", None) is not None:
        optimizers[id(model.ent_coef_optimizer)] = model.ent_coef_optimizer
    state = sum(t.numel() * t.element_size() for opt in optimizers.values() for s in opt.state.values()
                for t in s.values() if isinstance(t, torch.Tensor) and t.dim() > 0)
    return sum(p.numel() * p.element_size() for p in params.values()), state


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent exits, in any way (SIGKILL included);
    exit at once if the parent named in ``PARENT_ENV`` is gone already (it died before the request)."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        os._exit(1)


def small_pages() -> None:
    """Disable transparent huge pages for this process (Linux), so buffer pages are committed 4 KiB at a
    time as rows are written, and RSS growth can be compared with rows filled."""
    if sys.platform.startswith("linux"):
        PR_SET_THP_DISABLE = 41
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


def main(config_path: str, out_dir: str) -> int:
    die_with_parent()
    wait_confined()  # a confined run: in its memory group before torch is imported
    small_pages()
    config = RunConfig.from_json(Path(config_path).read_text())
    out = Path(out_dir)
    sampler = MemorySampler(out / "timeseries.csv", config.sample_ms / 1000).start()
    log = RunLog(out, config, sampler)
    log.mark("start")

    import gymnasium
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    log.mark("imports")
    # gymnasium's episode statistics keep a bounded queue, where SB3's Monitor keeps every episode's
    # return, length and time in growing lists (~100 B per episode: noise in the buffer's RSS growth)
    env = DummyVecEnv([lambda: gymnasium.wrappers.RecordEpisodeStatistics(gymnasium.make(training_id(config.env_id)))])
    env.seed(config.seed)
    log.mark("env_made")

    model = build_model(config, env)
    if config.memray:
        import memray
        trace = out / "construction.memray"
        trace.unlink(missing_ok=True)
        with memray.Tracker(trace):
            model._setup_model()
    else:
        model._setup_model()
    on_policy = is_on_policy(config.algo)
    buffer = model.rollout_buffer if on_policy else model.replay_buffer
    memray_groups = memray_attribution(trace, buffer_arrays(buffer)) if config.memray else None
    params, _ = model_and_optimizer_bytes(model)
    log.mark("model_built", buffer_bytes=buffer_bytes(buffer), model_bytes=params,
             module_buffer_bytes=module_buffer_bytes(model), memray=memray_groups,
             buffer_resident_built=resident_bytes(buffer_arrays(buffer)),
             buffer_heap_placed=heap_placed(buffer, MMAP_THRESHOLD))

    if config.steps == 0:  # construction only (the memray pass): nothing to train
        sampler.stop()
        log.data["status"] = "complete"
        log.write()
        return 0

    pooled = config.pool_rows > 0
    timing = {}
    if pooled:  # written full before learn(), from real transitions recorded first
        from validation.scan import random_transitions

        started = time.perf_counter()
        pool = random_transitions(config.env_id, min(config.fill_pool, config.buffer_size), seed=0)  # the scan's
        recorded = time.perf_counter()

        def at_row(i: int) -> None:
            sampler.step = i
            if i == max(1, config.buffer_size // 10):
                log.mark("buffer_10pct", buffer_resident_10pct=resident_bytes(buffer_arrays(buffer)))

        fill_from_pool(model, pool, config.buffer_size, at_row)
        timing.update(pool_record_s=recorded - started,
                      fill_us_per_row=1e6 * (time.perf_counter() - recorded) / config.buffer_size)
        log.mark("buffer_full", buffer_resident_full=resident_bytes(buffer_arrays(buffer)))  # the pool as at 10 %
        del pool
        gc.collect()
    full_at = config.buffer_size if (on_policy or (config.fill and not pooled)) else None
    offset = config.pool_rows
    returns = open(out / "returns.csv", "w")
    returns.write("step,episode_return,episode_length\n")

    class Watch(BaseCallback):
        """Steps for the sampler, phase mark when the buffer is full, returns."""

        def __init__(self) -> None:
            super().__init__()
            self.full_time = None
            self.collect_s = 0.0
            self._rollout_t = 0.0

        def _on_step(self) -> bool:
            step = sampler.step = offset + self.num_timesteps
            for info in self.locals.get("infos", ()):
                if "episode" in info:
                    returns.write(f"{step},{info['episode']['r']:.4f},{info['episode']['l']}\n")
                    returns.flush()
            if not on_policy and full_at and step == max(1, full_at // 10):
                log.mark("buffer_10pct", buffer_resident_10pct=resident_bytes(buffer_arrays(buffer)))
            if not on_policy and full_at and step == full_at:
                self._full()
            return True

        def _on_rollout_start(self) -> None:
            self._rollout_t = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.collect_s += time.perf_counter() - self._rollout_t
            if on_policy and self.full_time is None:
                self._full()
            if offset + self.num_timesteps == config.first_update_step:  # the first gradient update comes next
                log.mark("training_starts")

        def _full(self) -> None:
            self.full_time = time.perf_counter()
            log.mark("buffer_full", buffer_resident_full=resident_bytes(buffer_arrays(buffer)))

    watch = Watch()
    start = time.perf_counter()
    model.learn(total_timesteps=config.learn_steps, callback=watch)
    end = time.perf_counter()
    returns.close()
    params, optimizer_state = model_and_optimizer_bytes(model)
    timing["wall_s"] = end - start
    if not on_policy and config.fill and not pooled:
        timing["acting_ms_per_step"] = 1000 * (watch.full_time - start) / config.buffer_size
        timing["training_ms_per_step"] = 1000 * (end - watch.full_time) / max(config.steps, 1)
    elif on_policy:
        timing["acting_ms_per_step"] = 1000 * watch.collect_s / config.learn_steps
        timing["update_ms_per_step"] = 1000 * (end - start - watch.collect_s) / config.learn_steps
        timing["training_ms_per_step"] = 1000 * (end - start) / config.learn_steps
    else:
        timing["training_ms_per_step"] = 1000 * (end - start) / config.learn_steps
    stats = buffer.quantization_stats() if hasattr(buffer, "quantization_stats") else None
    log.mark("end", model_bytes=params, module_buffer_bytes=module_buffer_bytes(model), optimizer_bytes=optimizer_state,
             timing=timing, quantization=stats,
             buffer_resident_end=resident_bytes(buffer_arrays(buffer)), steps_done=offset + int(model.num_timesteps))
    sampler.stop()
    log.data["status"] = "complete"
    log.write()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
