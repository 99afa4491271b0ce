"""Write the fold assignment of an experiment's training data to folds/<scheme>.csv."""

from __future__ import annotations

from pathlib import Path

from foldnlp import artifacts
from foldnlp.config import ExperimentConfig
from foldnlp.folds import assign_folds, fold_summary
from foldnlp.tasks import get_task


def make_folds(cfg: ExperimentConfig) -> tuple[Path, str]:
    """Returns the fold file written and a printable summary (rows, groups and strata per fold)."""
    task = get_task(cfg)
    table = task.fold_table(task.read_train())
    folds = assign_folds(table, cfg.folds.n_folds, cfg.folds.seed, cfg.folds.stratify_by, cfg.folds.group_by)
    path = artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme)
    artifacts.atomic_write_csv(path, folds)
    return path, fold_summary(table, folds, cfg.folds.stratify_by, cfg.folds.group_by)
