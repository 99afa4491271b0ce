"""One fold's process: train_fold.py --fold k (torchrun over a slot of several GPUs), its output in the fold's log."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import foldnlp
from foldnlp.errors import InputError
from foldnlp.folds_parallel.devices import Slot

# The checkout's train_fold.py, beside src/ (this file is src/foldnlp/folds_parallel/launcher.py).
TRAIN_SCRIPT = Path(__file__).resolve().parents[3] / "train_fold.py"
# The folder foldnlp is imported from here: put first on the folds' PYTHONPATH, so they run this same code.
PACKAGE_PARENT = Path(foldnlp.__file__).resolve().parents[1]


def train_script() -> Path:
    if not TRAIN_SCRIPT.is_file():
        raise InputError(f"{TRAIN_SCRIPT} does not exist: folds are trained by the train_fold.py of a foldnlp checkout "
                         "(run this from one, with its src/ installed or on PYTHONPATH)")
    return TRAIN_SCRIPT


def fold_command(fold: int, slot: Slot, train_args: list[str]) -> list[str]:
    """The command line training `fold` in `slot`: train_fold.py with train_args, under torchrun (one process per
    GPU, a local rendezvous on a free port, so that several slots' runs never meet) when the slot has several."""
    fold_args = [str(train_script()), *train_args, "--fold", str(fold)]
    if slot.processes == 1:
        return [sys.executable, *fold_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={slot.processes}",
            *fold_args]


def start(command: list[str], environment: dict[str, str], log: Path, *, fresh: bool) -> subprocess.Popen:
    """Start command with `environment` added to this process's, its stdout and stderr in `log`: replaced when
    fresh (a fold trained from scratch), else appended to (a resumed fold's log keeps what came before). A line
    at the top says when, what and with which settings, so the runs appended to one log can be told apart. The
    process leads a process group of its own (scheduler.py stops folds by group)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(PACKAGE_PARENT), *filter(None, [os.environ.get("PYTHONPATH")])])
    settings = " ".join(f"{key}={value}" for key, value in environment.items())
    with open(log, "w" if fresh else "a", encoding="utf-8") as handle:
        handle.write(f"# {datetime.now().isoformat(timespec='seconds')} {settings} {shlex.join(command)}\n")
        handle.flush()
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, **environment, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """In the fold's process, before its command starts: SIGINT back to its default action. A command started in
    the background by a non-interactive shell (`nohup ... &`, a CI job) inherits SIGINT ignored, and Python then
    never raises KeyboardInterrupt: a stopped fold would not stop (nor save its state) until killed."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def last_line(log: Path) -> str:
    """The last non-empty line of a fold's log: a failed train_fold.py's error message or exception (the log's
    last 64 KiB are read: a fold's log can be long)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""
