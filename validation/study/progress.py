"""Progress lines on stderr: finished / running / failed trials and an ETA."""

import sys
import time

from planner.errors import one_line


class Progress:
    """Counts the trials of this run (``skipped``: finished before) and prints a line at each change."""

    def __init__(self, total: int, skipped: int, stream=sys.stderr) -> None:
        self.total, self.skipped, self.stream = total, skipped, stream
        self.done = self.failed = self.running = 0
        self.t0 = time.monotonic()

    def started(self, trial_id: str) -> None:
        self.running += 1
        self.line(f"started {trial_id}")

    def ended(self, trial_id: str, end: dict) -> None:
        self.running -= 1
        if end.get("status") == "done":
            self.done += 1
            self.line(f"done {trial_id}: final return {end.get('final_return', float('nan')):.1f}, "
                      f"{end.get('ms_per_step', float('nan')):.2f} ms/step")
        else:
            self.failed += 1
            self.line(f"FAILED {trial_id}: {end.get('error', 'no error recorded')}")

    def eta_s(self) -> "float | None":
        """Seconds left at this run's pace so far (None before a trial ends)."""
        ended = self.done + self.failed
        if not ended:
            return None
        left = self.total - self.skipped - ended
        return (time.monotonic() - self.t0) / ended * left

    def line(self, event: str) -> None:
        """The counts, the ETA and ``event`` (a name in it from the spec: control characters escaped), one line."""
        eta = self.eta_s()
        eta_text = "ETA unknown" if eta is None else f"ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:" \
                                                     f"{int(eta % 60):02d}"
        finished = self.skipped + self.done
        print(f"[{time.strftime('%H:%M:%S')}] {finished}/{self.total} finished ({self.skipped} before this run), "
              f"{self.running} running, {self.failed} failed; {eta_text} | {one_line(event)}", file=self.stream,
              flush=True)
