"""The queue: each fold starts in the first free slot, in processes of its own, and the next waiting fold takes the
slot when it ends (whether it finished or failed); Ctrl-C (or SIGTERM, SIGHUP) stops every running fold.

A fold's process must lead a process group of its own (subprocess.Popen(start_new_session=True)), so that a stop
reaches all of it (torchrun and its workers) and only it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from foldnlp.folds_parallel.devices import Slot

POLL_S = 0.2  # how often the running processes are checked
# After Ctrl-C, how long a fold gets to stop by itself (train_fold ends at the next step; torchrun stops its
# workers) before it is killed. A second Ctrl-C kills at once.
STOP_GRACE_S = 60


@dataclass(frozen=True)
class Ended:
    fold: int
    returncode: int  # negative: killed by that signal
    seconds: float  # wall time of the fold's process


class Interrupted(Exception):
    """The queue was stopped: `stopped` were running and have ended now (one may have finished as it was
    stopped), `waiting` never started."""

    def __init__(self, stopped: list[Ended], waiting: list[int]):
        super().__init__(f"stopped folds {[e.fold for e in stopped]}, never started {waiting}")
        self.stopped, self.waiting = stopped, waiting


def run_queue(folds: list[int], slots: list[Slot], start: Callable[[int, Slot], subprocess.Popen],
              on_start: Callable[[int, Slot], None], on_end: Callable[[Ended], None]) -> None:
    """Run start(fold, slot) for every fold, at most one fold per slot at a time, in the order given; on_start and
    on_end are called as each starts and ends. Raises Interrupted on Ctrl-C, once every running fold is stopped."""
    waiting, free = deque(folds), list(range(len(slots)))
    running: dict[int, tuple[int, subprocess.Popen, float]] = {}  # slot index → (fold, process, start time)
    with _signals_as_interrupt():
        try:
            while waiting or running:
                while waiting and free:
                    index = free.pop(0)
                    fold = waiting.popleft()
                    running[index] = (fold, start(fold, slots[index]), time.monotonic())
                    on_start(fold, slots[index])
                for index, (fold, process, started) in list(running.items()):
                    if process.poll() is None:
                        continue
                    del running[index]
                    free.append(index)
                    free.sort()  # the lowest free slot first: the same placement on every run
                    on_end(Ended(fold, process.returncode, time.monotonic() - started))
                if running:
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            _stop([process for _, process, _ in running.values()])
            stopped = [Ended(fold, process.returncode, time.monotonic() - started)
                       for fold, process, started in sorted(running.values(), key=lambda r: r[0])]
            raise Interrupted(stopped, list(waiting)) from None
        except BaseException:  # a failure of the queue itself must not leave its folds training unwatched
            _stop([process for _, process, _ in running.values()])
            raise


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGINT to each process group (a Ctrl-C, as in a terminal), then SIGKILL to what has not ended after
    STOP_GRACE_S or at a second Ctrl-C."""
    _signal_groups(processes, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass
    _signal_groups([p for p in processes if p.poll() is None], signal.SIGKILL)
    for process in processes:
        process.wait()
    # torchrun's workers share its group: kill any it left behind once it ended
    _signal_groups(processes, signal.SIGKILL)


def _signal_groups(processes: list[subprocess.Popen], sig: int) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGTERM and SIGHUP (a closed terminal, a job scheduler's stop) stop the folds as Ctrl-C does, instead of
    leaving them running without their queue. Signal handlers can only be set in the main thread: elsewhere they are
    left as they are."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    wanted = (signal.SIGTERM, signal.SIGHUP)
    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in wanted}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
