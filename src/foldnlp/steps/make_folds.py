"""Write the fold assignment of an experiment's training data to folds/<scheme>.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldnlp import artifacts
from foldnlp.config import FoldsConfig
from foldnlp.data import read_qa_csv
from foldnlp.folds import assign_folds, fold_summary


def make_folds(train_csv: str, cfg: FoldsConfig) -> tuple[Path, str]:
    """Returns the fold file written and a printable summary (rows, contexts and languages per fold)."""
    frame: pd.DataFrame = read_qa_csv(train_csv, with_answers=True)
    folds = assign_folds(frame, cfg.n_folds, cfg.seed, cfg.stratify_by, cfg.group_by)
    path = artifacts.fold_file(cfg.folds_dir, cfg.scheme)
    artifacts.atomic_write_csv(path, folds)
    return path, fold_summary(frame, folds, cfg.stratify_by, cfg.group_by)
