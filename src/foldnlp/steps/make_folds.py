"""Write the fold assignment of an experiment's training data to folds/<scheme>.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldnlp import artifacts
from foldnlp.config import ExperimentConfig
from foldnlp.errors import InputError
from foldnlp.folds import assign_folds, fold_summary
from foldnlp.tables import describe_id_differences, read_text_csv
from foldnlp.tasks import get_task


def make_folds(cfg: ExperimentConfig) -> tuple[Path, str]:
    """Returns the fold file written and a printable summary (rows, groups and strata per fold).

    The same data and settings give a byte-identical file, so re-running is always safe. A fold file of the same
    name made from other data is refused, not replaced (see check_same_data).
    """
    task = get_task(cfg)
    table = task.fold_table(task.read_train())
    folds = assign_folds(table, cfg.folds.n_folds, cfg.folds.seed, cfg.folds.stratify_by, cfg.folds.group_by)
    path = artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme)
    check_same_data(path, table["id"], cfg.data.train_csv)
    artifacts.atomic_write_csv(path, folds)
    return path, fold_summary(table, folds, cfg.folds.stratify_by, cfg.folds.group_by)


def check_same_data(path: Path, ids: pd.Series, train_csv: str) -> None:
    """Refuse to replace a fold file made from other data.

    A fold file is named by its settings only, so a config copied for another competition (another train CSV, the
    same fold settings) would overwrite the folds every run of the first data was trained on, and those runs would
    then fail their provenance checks or, worse, be blended with runs of the new folds. The ids in the file tell
    which data it was made from: the same ids are the same data set (its rows may have been corrected, and the new
    folds are then checked against the old runs by their provenance), other ids are another one.
    """
    if not path.is_file():
        return
    try:
        existing = read_text_csv(path)
    except InputError:
        existing = pd.DataFrame()  # unreadable or empty: not a fold file of this data either
    if "id" not in existing.columns:
        raise InputError(f"{path} exists and is not a fold file (no id column); refusing to replace it: delete it or "
                         "set another folds.folds_dir (e.g. --set folds.folds_dir=folds/<competition>)")
    differences = describe_id_differences(ids, existing["id"], str(train_csv), str(path))
    if differences:
        raise InputError(f"{path} was made from other data than {train_csv} ({differences}); refusing to replace the "
                         "folds its runs were trained on: set another folds.folds_dir for this data (e.g. --set "
                         f"folds.folds_dir=folds/<competition>), or delete {path} if nothing uses it any more")
