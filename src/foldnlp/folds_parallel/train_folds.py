"""Train an experiment's folds in parallel: checked first, then queued over the slots, one line per fold as it
starts and ends, each fold's output in its train.log."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from foldnlp import artifacts, test_outputs
from foldnlp.config import ExperimentConfig, load_config
from foldnlp.errors import InputError
from foldnlp.folds import chosen_folds
from foldnlp.folds_parallel import launcher
from foldnlp.folds_parallel.devices import Slot, slot_environment, threads_per_process
from foldnlp.folds_parallel.scheduler import Ended, Interrupted, run_queue
from foldnlp.progress import write


@dataclass(frozen=True)
class FoldsResult:
    root: Path  # the experiment's run folder
    finished: list[int]  # trained now or kept (already finished, --resume)
    failed: list[int]
    seconds: float


def train_folds(config: Path, overrides: list[str], slots: list[Slot], *, folds: list[int] | None = None,
                resume: bool = False, overwrite: bool = False, threads: int | None = None,
                quiet: bool = False) -> FoldsResult:
    """Train `folds` (default: every fold of folds.n_folds) of the experiment, each by train_fold.py in a process of
    its own, at most one per slot at a time. A fold that fails is reported and the others go on. Raises
    InputError before any fold starts when the run cannot be right, Interrupted (with the folds stopped) on
    Ctrl-C."""
    if overwrite and resume:
        raise InputError("--overwrite and --resume contradict each other: pick one")
    cfg = load_config(config, overrides)
    folds = chosen_folds(cfg.folds.n_folds, folds)
    fold_path = artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme)
    if not fold_path.is_file():
        raise InputError(f"fold file {fold_path} does not exist: run `python make_folds.py` with this config first")
    paths = artifacts.RunPaths.of(cfg.output_dir, cfg.name)
    if not (resume or overwrite):
        _check_nothing_started(paths, folds)
    _check_gpus(slots)
    kept = _keep_finished(cfg, paths, folds) if resume else []
    folds = [k for k in folds if k not in kept]
    if threads is None:  # the processes that run at once: fewer folds than slots leave slots unused
        threads = threads_per_process(_usable_cores(), sum(slot.processes for slot in slots[:len(folds)]))
    if overwrite:
        # Each train_fold --overwrite drops its fold from the test outputs' shared settings records; two folds
        # doing it at once would each rewrite a record from the same old copy, and one removal would be lost.
        # Dropped here, one fold after the other, the folds find nothing left to drop.
        for fold in folds:
            test_outputs.forget_fold(paths, fold)
    train_args = ["--config", str(config), *[a for o in overrides for a in ("--set", o)],
                  *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else []),
                  *(["--quiet"] if quiet else [])]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")

    def start(fold: int, slot: Slot):
        return launcher.start(launcher.fold_command(fold, slot, train_args), slot_environment(slot, threads, visible),
                              paths.train_log(fold), fresh=not resume)

    def on_start(fold: int, slot: Slot) -> None:
        write(f"fold {fold}: started on {slot.describe()}, {threads} thread(s) per process; log: "
              f"{paths.train_log(fold)}")

    finished, failed = list(kept), []

    def on_end(ended: Ended) -> None:
        line, ok = _outcome(paths, ended)
        (finished if ok else failed).append(ended.fold)
        write(line)

    started = time.perf_counter()
    try:
        run_queue(folds, slots, start, on_start, on_end)
    except Interrupted as interrupted:
        for ended in interrupted.stopped:
            line, ok = _outcome(paths, ended)
            write(line if ok else f"fold {ended.fold}: stopped (its saved training state, if any, is kept); log: "
                                  f"{paths.train_log(ended.fold)}")
        for fold in interrupted.waiting:
            write(f"fold {fold}: not started")
        raise
    return FoldsResult(paths.root, sorted(finished), sorted(failed), time.perf_counter() - started)


def _keep_finished(cfg: ExperimentConfig, paths: artifacts.RunPaths, folds: list[int]) -> list[int]:
    """--resume: the finished folds, kept. Each is checked by train_fold --resume itself, here, before any fold
    starts (InputError when it was trained with another config, data or folds), and takes no slot; the
    unfinished folds go to the queue."""
    finished = [k for k in folds if paths.metrics(k).is_file()]
    if finished:
        from foldnlp.steps.train_fold import train_fold  # torch and transformers: only when there is one

        for fold in finished:
            write(f"fold {fold}: already finished, kept ({_best(train_fold(cfg, fold, resume=True, progress=False))})")
    return finished


def _best(metrics: dict) -> str:
    return f"best {metrics['metric']} {metrics[metrics['metric']]:.4f} at step {metrics['best_step']}"


def _outcome(paths: artifacts.RunPaths, ended: Ended) -> tuple[str, bool]:
    """The console line of a fold that ended, and whether it finished (exit 0 and its metrics.json written)."""
    fold, log = ended.fold, paths.train_log(ended.fold)
    metrics_path = paths.metrics(fold)
    if ended.returncode != 0 or not metrics_path.is_file():
        why = f"exit {ended.returncode}" if ended.returncode != 0 else f"exit 0 without writing {metrics_path.name}"
        last = launcher.last_line(log)
        return f"fold {fold}: failed ({why}) after {ended.seconds:.0f} s: {last or '(no output)'}; log: {log}", False
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return f"fold {fold}: finished in {ended.seconds:.0f} s, {_best(metrics)}", True


def _check_nothing_started(paths: artifacts.RunPaths, folds: list[int]) -> None:
    """Without --resume or --overwrite every fold must be new: train_fold.py would refuse each of the others, one
    process start apiece; refused here at once, naming them all."""
    finished = [k for k in folds if paths.metrics(k).is_file()]
    saved = [k for k in folds if k not in finished and artifacts.recover_dir(paths.training_state(k)).exists()]
    if finished or saved:
        found = [f"fold(s) {', '.join(map(str, ks))} {what}" for ks, what in
                 [(finished, "already finished"), (saved, "have a saved training state")] if ks]
        raise InputError(f"{paths.root}: {' and '.join(found)}: pass --resume to keep finished folds and continue "
                         "unfinished ones, or --overwrite to train them all again")


def _check_gpus(slots: list[Slot]) -> None:
    """Every GPU named must be one torch sees here: a fold given a GPU that does not exist would train on CPU."""
    wanted = sorted({gpu for slot in slots for gpu in slot.gpus})
    if not wanted:
        return
    import torch  # only for GPU slots: a CPU run starts without it

    count = torch.cuda.device_count()
    if wanted[-1] >= count:
        seen = f"{count} GPU(s) are visible (cuda:0 to cuda:{count - 1})" if count else "no GPU is visible"
        raise InputError(f"--devices names GPU {wanted[-1]}, but {seen}: name visible GPUs, or use --devices cpu:N")


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which taskset and container limits narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
