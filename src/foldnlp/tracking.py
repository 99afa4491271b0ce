"""Experiment tracking: wandb behind a small interface; offline by default, one run per fold grouped by experiment."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

STEP = "train/step"  # the x-axis of every logged metric: the optimizer step


class Tracker:
    """Logs metrics of one fold's training: one wandb run per fold (named <experiment>-fold<k>), grouped by
    experiment; finish() writes the fold's summary (its best metric: the fold's CV). mode 'disabled' makes every
    call a no-op without importing wandb."""

    def __init__(self, mode: str, project: str, experiment: str, fold: int, config: dict, run_dir: Path):
        self._run = None
        if mode == "disabled":
            return
        import wandb  # imported lazily: it is slow to import and unneeded when tracking is off

        os.environ.setdefault("WANDB_SILENT", "true")
        run_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(mode=mode, project=project, group=experiment, job_type=f"fold{fold}",
                               name=f"{experiment}-fold{fold}", config=config, dir=str(run_dir),
                               reinit="finish_previous")
        # Plotted against the training step, logged as a metric rather than as wandb's own step, which must only
        # grow: after a revert to a saved state (training_guard.py) the steps replayed are logged again.
        self._run.define_metric(STEP)
        self._run.define_metric("*", step_metric=STEP)
        log.info("wandb %s run %s in %s", mode, self._run.name, run_dir / "wandb")

    def log(self, metrics: dict, step: int) -> None:
        if self._run is not None:
            self._run.log({**metrics, STEP: step})

    def finish(self, summary: dict) -> None:
        if self._run is not None:
            import wandb

            self._run.summary.update(summary)
            self._run.finish()
            # finish() returns once the run's exit is recorded, but wandb's service closes (flushes) the run's
            # .wandb file only later, on its own: an offline run read or synced at once could be empty. teardown()
            # waits for the service to close every stream and exit; the next Tracker starts a new one.
            wandb.teardown()
