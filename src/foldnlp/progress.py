"""Progress of the long loops (training steps, evaluation and test windows, test chunks): one mechanism for all.

In a terminal (or a notebook) it is a tqdm bar. Anywhere else (a log file, `nohup`, CI, a pipe, a Kaggle kernel's
log) a bar is a disaster: it redraws itself with carriage returns ten times a second, and a log keeps every redraw,
as one endless line. There a loop prints a plain line instead each time it passes another tenth of its total, and
a transient loop (one nested inside another whose own lines already say how far it is, as each evaluation within
training) prints nothing:

    train: 36/108 step (33 %) in 3.1 s, 11.5 step/s, loss=4.156, lr=1.75e-05, windows_per_s=184.2, jaccard=0.4120,
    best=0.4470

In a launch of several processes (torchrun, accelerate launch) only process 0 shows progress and story lines: the
others would repeat them (see processes.py).
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm

from foldnlp.processes import launch_rank

PLAIN_LINES = 10  # lines per loop when the output is not a terminal: one per tenth of the total


def is_interactive(stream=None) -> bool:
    """Whether progress shows as a redrawn bar: the stream is a terminal, or this runs in a notebook kernel."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def quiet_library_bars() -> None:
    """Turn off the bars of Hugging Face libraries (transformers' "Loading weights", the hub's downloads), which
    know nothing of logs: for processes whose output is not a terminal, and for --quiet ones."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is first imported
    if "transformers" in sys.modules:  # already imported: its switch is read at import, so flip it directly
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def write(message: str) -> None:
    """Print a line of the run's story (an evaluation's outcome) to stdout, above a bar if one is drawn; only
    process 0 of a launch prints it."""
    if launch_rank() == 0:
        tqdm.write(message)


class Progress:
    """A bar in a terminal, plain lines every tenth of `total` elsewhere (none if transient), nothing if disabled.

    Used like tqdm: update(n), set_postfix(**fields), close(), or as a context manager. `initial` is where a resumed
    loop starts; `stream` is where it goes (default: sys.stderr at creation). Disabled on every process of a launch
    but process 0.
    """

    def __init__(self, total: int, desc: str, unit: str, *, enabled: bool = True, initial: int = 0,
                 transient: bool = False, stream=None):
        enabled = enabled and launch_rank() == 0
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._stream = sys.stderr if stream is None else stream
        interactive = is_interactive(self._stream)
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=not transient,
                         file=self._stream) if enabled and interactive else None
        self._plain = enabled and not interactive and not transient
        self._start, self._started_at = initial, time.perf_counter()
        self._printed = initial  # where the last plain line stood (a resumed loop has said nothing yet)
        self._postfix: dict[str, object] = {}

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain and self._tenth(self.n) > self._tenth(before):
            self._print_line()

    def set_postfix(self, **fields) -> None:
        self._postfix = fields
        if self._bar is not None:
            self._bar.set_postfix(**fields)

    def rewind(self, n: int) -> None:
        """The loop went back to `n` (a revert to a saved training state): show `n` again; in logs the tenths
        passed again are printed again."""
        self.n = n
        if self._bar is not None:
            self._bar.n = n
            self._bar.refresh()
        self._printed = min(self._printed, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._plain and self.n != self._printed:
            self._print_line()  # stopped between two tenths (early stopping, a last partial chunk): say where
        self._plain = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tenth(self, n: int) -> int:
        return PLAIN_LINES * min(n, self.total) // self.total if self.total > 0 else 0

    def _print_line(self) -> None:
        self._printed = self.n
        seconds = time.perf_counter() - self._started_at
        rate = (self.n - self._start) / seconds if seconds > 0 else 0.0
        percent = 100 * self.n // self.total if self.total > 0 else 100
        fields = "".join(f", {key}={value}" for key, value in self._postfix.items())
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({percent} %) in {seconds:.1f} s, "
              f"{rate:.1f} {self.unit}/s{fields}", file=self._stream, flush=True)
