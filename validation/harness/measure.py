"""Measurements inside a run: a psutil sampler thread, resident pages of arrays, memray attribution."""

import csv
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil

BUFFER_FILES = ("stable_baselines3/common/buffers.py", "sb3_contrib/common/recurrent/buffers.py",
                "validation/buffers/replay.py", "validation/buffers/rollout.py", "cython_core/storage.py")


class MemorySampler:
    """Samples this process's RSS and USS every ``period_s`` on a background thread into a CSV, flushed
    row by row (so a killed run leaves what it measured). ``step`` is read from the training loop."""

    def __init__(self, path: Path, period_s: float = 0.02) -> None:
        self.process = psutil.Process()
        self.period_s = period_s
        self.step = 0
        self.phase = "start"
        self.peak_rss = 0
        self.t0 = time.perf_counter()
        self._file = open(path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["t_s", "step", "phase", "rss_bytes", "uss_bytes"])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def start(self) -> "MemorySampler":
        self._thread.start()
        return self

    def sample(self):
        """Take one sample now and return psutil's figures (``rss``, ``uss``, ``shared``: the resident pages backed
        by a file, such as the code of a library)."""
        info = self.process.memory_full_info()
        with self._lock:
            self.peak_rss = max(self.peak_rss, info.rss)
            self._writer.writerow([f"{time.perf_counter() - self.t0:.4f}", self.step, self.phase, info.rss, info.uss])
            self._file.flush()
        return info

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self._file.close()


def resident_bytes(arrays: "list[np.ndarray]") -> "int | None":
    """Bytes of ``arrays`` whose pages are resident (committed), from /proc/self/pagemap; None off Linux."""
    path = "/proc/self/pagemap"
    if not os.path.exists(path):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    with open(path, "rb") as pagemap:
        for array in arrays:
            start, end = array.ctypes.data, array.ctypes.data + array.nbytes
            if end <= start:
                continue
            first, last = start // page, (end - 1) // page
            pagemap.seek(first * 8)
            entries = np.frombuffer(pagemap.read((last - first + 1) * 8), dtype="<u8")
            present = (entries >> np.uint64(63)) & np.uint64(1)
            lows = np.maximum(np.arange(first, last + 1) * page, start)
            highs = np.minimum(np.arange(first + 1, last + 2) * page, end)
            total += int(((highs - lows) * present.astype(np.int64)).sum())
    return total


def named_buffer_arrays(buffer: object) -> "list[tuple[str, np.ndarray]]":
    """(attribute, array) of each numpy array a buffer owns (SB3's fields and Dict fields, or the observation stores
    of ours), each once."""
    arrays, seen = [], set()
    for name, value in vars(buffer).items():
        if hasattr(value, "owned"):  # validation.buffers.obs_store.ObservationRows
            value = dict(enumerate(value.owned()))
        for array in value.values() if isinstance(value, dict) else (value,):
            if isinstance(array, np.ndarray) and array.nbytes and array.ctypes.data not in seen:
                seen.add(array.ctypes.data)
                arrays.append((name, array))
    return arrays


def buffer_arrays(buffer: object) -> "list[np.ndarray]":
    """The numpy arrays a buffer owns, each once (:func:`named_buffer_arrays`)."""
    return [array for _, array in named_buffer_arrays(buffer)]


def heap_placed(buffer: object, threshold: int) -> "dict[str, int] | None":
    """Bytes of the buffer's arrays of ``threshold`` bytes or more that glibc placed in its main heap, by attribute;
    None off Linux. The mmap threshold sends such a request to a mapping of its own only when no free chunk of the
    heap fits it; one that lands in the heap is cleared by calloc there, so its pages are committed when the buffer
    is built, not row by row."""
    try:
        with open("/proc/self/maps") as maps:
            heaps = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in maps
                     if line.rstrip().endswith("[heap]")]
    except OSError:
        return None
    placed: "dict[str, int]" = {}
    for name, array in named_buffer_arrays(buffer):
        if array.nbytes >= threshold and any(low <= array.ctypes.data < high for low, high in heaps):
            placed[name] = placed.get(name, 0) + array.nbytes
    return placed


def buffer_bytes(buffer: object) -> int:
    """The buffer's own account: ``memory_bytes()`` where it has one, else the sum of its arrays."""
    if hasattr(buffer, "memory_bytes"):
        return int(buffer.memory_bytes())
    return sum(a.nbytes for a in buffer_arrays(buffer))


def _site(record) -> str:
    """The group a memray record's allocation site belongs to: buffer constructors, torch, or other."""
    files = [frame[1].replace("\\", "/") for frame in record.stack_trace()]
    if any(f.endswith(b) for f in files for b in BUFFER_FILES):
        return "buffer"
    return "torch" if any("/torch/" in f for f in files) else "other"


ARENA_BYTES = 1 << 20  # CPython's obmalloc arena (3.10 and later), mapped with mmap


def memray_attribution(path: Path, arrays: "list[np.ndarray]") -> "dict[str, int | str]":
    """What the traced construction left allocated when the trace stopped, in bytes, by allocation site
    (``buffer``: the buffer constructors, ``torch``: models, ``other``; ``arenas``: CPython's small-object arenas,
    apart), ``peak`` (memray's high-water mark), ``buffer_arrays``: the allocations still live at the addresses of
    the buffer's ``arrays`` (the rest of ``buffer`` is Python objects and per-dimension spec vectors, a fixed few KB
    per buffer), and ``buffer_largest``: where the largest of the rest was made (for the report's note).

    What was freed before the trace stopped is not the buffer's: a temporary counts only in ``peak``. (The
    high-water snapshot counted whatever was live at the peak; in CI, now and then, it held 1 MiB more at a PPO
    buffer's constructor than the buffer's 0.015 MB, a rare allocation not seen here in 40 traced runs.) An arena
    is mapped by whichever small allocation first finds the others full, and holds the small objects of everything
    after it: charged to its site, a buffer constructor that happened to open one would show 1 MiB it does not own
    (seen in CI: 1.111 MB against 0.053 MB)."""
    from memray import AllocatorType, FileReader

    releases = {AllocatorType.FREE, AllocatorType.PYMALLOC_FREE, AllocatorType.MUNMAP}
    wanted = {a.ctypes.data for a in arrays}
    groups = {"buffer": 0, "buffer_arrays": 0, "torch": 0, "other": 0, "arenas": 0}
    largest = (0, "")
    with FileReader(path) as reader:
        live = {}
        for record in reader.get_allocation_records():
            if record.allocator in releases:
                live.pop(record.address, None)
            else:
                live[record.address] = record
        for address, record in live.items():
            arena = record.allocator == AllocatorType.MMAP and record.size % ARENA_BYTES == 0
            site = "arenas" if arena else _site(record)
            groups[site] += record.size
            if site == "buffer" and address in wanted:
                groups["buffer_arrays"] += record.size
            elif site == "buffer" and record.size > largest[0]:
                frame = record.stack_trace()[0] if record.stack_trace() else ("?", "?", 0)
                largest = (record.size, f"{record.size:,} B at {Path(frame[1]).name}:{frame[2]}")
        groups["buffer_largest"] = largest[1]
        groups["peak"] = reader.metadata.peak_memory
    return groups
