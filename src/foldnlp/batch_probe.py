"""The largest per-device training batch that fits in memory: on CUDA a search that tries training steps and catches
out-of-memory errors; on CPU a rule that extrapolates the peak memory of steps at batch 1 and 2.

The CUDA search doubles the batch from 1 until a step runs out of memory (or PROBE_LIMIT is passed), then bisects
between the last size that fitted and the first that did not: about 2·log2(answer) steps. It assumes that a batch
which fits means every smaller one fits (the memory of a step grows with its windows).

The CPU rule: a step's peak resident memory grows linearly with its windows, peak(b) = peak(1) + (b - 1)·w, with w
the measured peak(2) - peak(1) (at least MIN_WINDOW_BYTES: below that the difference is within what the allocator
already holds). The largest b whose peak(b) stays within the memory resident now plus CPU_MEMORY_FRACTION of the
memory the system still has available (MemAvailable of /proc/meminfo, or less under a cgroup limit) is the answer;
the rest is left to evaluation, the data and other processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from foldnlp.errors import InputError

PROBE_LIMIT = 1024  # the search stops here: a larger per-device batch is not tried
CPU_MEMORY_FRACTION = 0.8  # of the available memory a CPU batch may take
MIN_WINDOW_BYTES = 1 << 20  # per-window memory below this is not measurable (/proc counts kB, allocators hold MiB)


def largest_fitting(fits: Callable[[int], bool], limit: int = PROBE_LIMIT) -> int:
    """The largest batch size b in [1, limit] with fits(b), by doubling then bisecting (fits is monotone: a size
    that fits means every smaller one does); 0 when batch 1 does not fit."""
    good, size = 0, 1  # the largest size known to fit; the next to try
    while size <= limit and fits(size):
        good, size = size, 2 * size
    bad = min(size, limit + 1)  # the smallest size known not to fit (limit + 1: none failed up to the limit)
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def cuda_fits(step: Callable[[int], None], release: Callable[[], None]) -> Callable[[int], bool]:
    """fits(b) for largest_fitting: runs step(b) (forward, backward and optimizer step of a batch of b windows) and
    says whether it ran without torch.cuda.OutOfMemoryError; any other error propagates. release() runs after every
    try, outside the except block (there the error's traceback still holds the failed step's frames and tensors): it
    frees what the try left (gradients, the allocator's cached blocks), so that each try starts from the same memory."""

    def fits(batch_size: int) -> bool:
        try:
            step(batch_size)
            ran = True
        except torch.cuda.OutOfMemoryError:
            ran = False
        release()
        return ran

    return fits


def cpu_batch_size(peak_1: int, peak_2: int, resident: int, available: int, *,
                   fraction: float = CPU_MEMORY_FRACTION, limit: int = PROBE_LIMIT) -> int:
    """The CPU rule (see the module doc), in bytes: peak_1 and peak_2 the process's peak resident memory during one
    step at batch 1 and 2, resident the memory it holds now, available what the system can still give. 0 when even
    batch 1 is over; at most limit."""
    per_window = max(peak_2 - peak_1, MIN_WINDOW_BYTES)
    ceiling = resident + fraction * available
    if peak_1 > ceiling:
        return 0
    return int(min(limit, 1 + (ceiling - peak_1) // per_window))


def peak_resident_during(run: Callable[[], None]) -> int:
    """The process's peak resident memory (bytes) while run() runs: Linux's high-water mark, reset first (writing 5
    to /proc/self/clear_refs), read from /proc/self/status."""
    clear_refs = Path("/proc/self/clear_refs")
    if not clear_refs.exists():
        raise InputError("train_fold.py --probe-batch-size on CPU measures memory through /proc (Linux only)")
    clear_refs.write_text("5")
    run()
    return _status_bytes("VmHWM")


def resident_bytes() -> int:
    return _status_bytes("VmRSS")


def available_bytes() -> int:
    """Memory the system can still give this process: MemAvailable, or less when a cgroup v2 limit is nearer."""
    meminfo = Path("/proc/meminfo").read_text()
    available = int(re.search(r"MemAvailable:\s+(\d+) kB", meminfo).group(1)) * 1024
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.exists() and used.exists() and limit.read_text().strip() != "max":
        available = min(available, int(limit.read_text()) - int(used.read_text()))
    return available


def _status_bytes(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) * 1024
