"""A study folder: ``study.json`` (the spec and its trials), ``trials/<trial-id>.jsonl`` (one JSON record per
line, written as the trial goes: "start", an "eval" every K steps, then "end" with status done or failed),
``logs/`` (the stderr of local trials), the summary, and ``study.lock`` while a study writes the folder.

A trial whose file ends with a done record is finished; any other file (cut short, or failed) is run again.
"""

import json
import os
from pathlib import Path

from planner.errors import one_line

TRIALS = "trials"
LOGS = "logs"
STUDY = "study.json"
LOCK = "study.lock"  # held by the study writing the folder (validation.harness.folder.hold)


def trial_path(out: Path, trial_id: str) -> Path:
    return out / TRIALS / f"{trial_id}.jsonl"


def records(path: Path) -> "list[dict]":
    """The records of a trial file; a line cut short by a kill (the last) is left out."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def end_of(path: Path) -> "dict | None":
    """The trial's end record, or None if it has none (not started, running, or cut short)."""
    found = records(path)
    return found[-1] if found and found[-1].get("kind") == "end" else None


def is_done(path: Path, config: dict) -> bool:
    """The file ends with a done record and starts with the trial ``config`` (a spec that changed a trial's m or
    buffer under the same id runs it again)."""
    found = records(path)
    return bool(found) and found[-1].get("kind") == "end" and found[-1].get("status") == "done" \
        and found[0].get("config") == config


def failure(error: str) -> dict:
    """The end record of a failed trial."""
    return {"kind": "end", "status": "failed", "error": one_line(error)[:500]}


class TrialFile:
    """Appends records to one trial's file, each line flushed as it is written. ``fresh`` starts the file over
    (a rerun of a trial that did not finish)."""

    def __init__(self, path: Path, fresh: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "w" if fresh else "a")

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, sort_keys=True) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def write_study(out: Path, spec_source: str, trial_ids: "list[str]") -> None:
    """study.json: which spec the folder holds and the ids of its trials (what the summary reads)."""
    out.mkdir(parents=True, exist_ok=True)
    temp = out / f".{STUDY}.tmp"
    temp.write_text(json.dumps({"spec": spec_source, "trials": trial_ids}, indent=1))
    temp.replace(out / STUDY)


def study_trials(out: Path) -> "list[str]":
    """The trial ids of the study in ``out``: study.json's, else every trial file there."""
    try:
        data = json.loads((out / STUDY).read_text())
        return [str(t) for t in data["trials"]]
    except (OSError, ValueError, KeyError, TypeError):
        return sorted(p.stem for p in (out / TRIALS).glob("*.jsonl"))

