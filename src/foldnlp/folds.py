"""Assign rows to cross-validation folds deterministically, never splitting a group (a context, an essay) across
folds."""

import re

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows
from foldnlp.tables import (
    check_not_blank,
    check_unique_ids,
    describe_id_differences,
    read_text_csv,
    refuse_bad_cells,
    require_columns,
    row_labels,
)

_SOURCE = "fold assignment"


def assign_folds(frame: pd.DataFrame, n_folds: int, seed: int, stratify_by: str | None,
                 group_by: str | None) -> pd.DataFrame:
    """Columns id, fold (0..n_folds-1) in the row order of frame; the same inputs always give the same folds.

    A stratify_by column of tuples holds each row's set of labels (multi-label; the empty tuple is a row without
    labels): the folds then share out every label evenly at once (iterative stratification)."""
    used = [c for c in ("id", stratify_by, group_by) if c is not None]
    require_columns(frame, used, _SOURCE)
    check_not_blank(frame, used, _SOURCE)
    n_groups = frame[group_by].nunique() if group_by else len(frame)
    if not 2 <= n_folds <= n_groups:
        unit = f"distinct values of '{group_by}'" if group_by else "rows"
        raise InputError(f"n_folds must be between 2 and the number of {unit} ({n_groups}); got {n_folds}")
    if stratify_by and _holds_label_sets(frame, stratify_by):
        fold = _multilabel_folds(frame, n_folds, seed, stratify_by, group_by)
    else:
        splitter = _splitter(n_folds, seed, stratify=stratify_by is not None, group=group_by is not None)
        fold = _split(splitter, n_folds, len(frame), frame[stratify_by].to_numpy() if stratify_by else None,
                      frame[group_by].to_numpy() if group_by else None, stratify_by)
    empty = sorted(set(range(n_folds)) - set(fold.tolist()))
    if empty:
        raise InputError(f"fold(s) {format_rows(empty)} got no rows; use fewer than {n_folds} folds")
    return pd.DataFrame({"id": frame["id"].to_numpy(), "fold": fold})


def chosen_folds(n_folds: int, folds: list[int] | None) -> list[int]:
    """The folds a command was given (--folds), checked against folds.n_folds: each once, in range; None: all."""
    every = list(range(n_folds))
    if folds is None:
        return every
    wrong = [k for k in folds if k not in every]
    if wrong or len(set(folds)) < len(folds) or not folds:
        raise InputError(f"--folds {' '.join(map(str, folds))}: each fold once, from {every[0]} to {every[-1]} "
                         f"(folds.n_folds is {n_folds})")
    return list(folds)


def read_folds(path, ids) -> pd.Series:
    """Fold per id (index=id, in the order of ids) from a CSV with columns id, fold; its ids must equal ids."""
    table = read_text_csv(path)
    require_columns(table, ("id", "fold"), path)
    check_not_blank(table, ["id"], path)
    check_unique_ids(table, path)
    bad = ~table["fold"].fillna("").str.fullmatch(r"\s*\d{1,9}\s*").to_numpy()
    refuse_bad_cells(table, bad, "fold", "must be a non-negative integer", path)
    differences = describe_id_differences(ids, table["id"], "the data", str(path))
    if differences:
        raise InputError(f"{path}: fold file does not match the data ({differences}); make folds for this data "
                         "with make_folds.py in another folds.folds_dir (or delete this file first if nothing uses it)")
    folds = pd.Series(table["fold"].str.strip().astype("int64").to_numpy(), index=table["id"].to_numpy(), name="fold")
    return folds.reindex(list(ids)).rename_axis("id")


def fold_summary(frame: pd.DataFrame, folds: pd.DataFrame, stratify_by: str | None,
                 group_by: str | None) -> str:
    """Per fold: rows, distinct groups and per-stratum counts, plus a total line, as a printable table."""
    assigned = frame["id"].map(folds.set_index("id")["fold"])
    if assigned.isna().any():
        missing = frame["id"][assigned.isna()].tolist()
        raise InputError(f"{_SOURCE}: {len(missing)} id(s) have no fold: {format_rows(missing, 5)}")
    assigned = assigned.astype("int64").rename("fold")
    by_fold = frame.groupby(assigned)
    table = pd.DataFrame({"rows": by_fold.size()})
    total = {"rows": len(frame)}
    if group_by:
        table["groups"] = by_fold[group_by].nunique()
        total["groups"] = frame[group_by].nunique()
    if stratify_by:
        # Multi-label: per label, the rows that have it (a row counts once for each of its labels).
        counts = (_label_indicator(frame[stratify_by]).groupby(assigned.to_numpy()).sum()
                  if _holds_label_sets(frame, stratify_by) else pd.crosstab(assigned, frame[stratify_by]))
        table = table.join(counts)
        total.update(counts.sum())
    table.index = table.index.astype(object)
    table.loc["total"] = pd.Series(total)
    return table.to_string()


def _splitter(n_folds: int, seed: int, *, stratify: bool, group: bool):
    # Imported here: ensembling reads fold files but never splits, and a Kaggle kernel ships no scikit-learn.
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if stratify and group:
        return StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    if group:
        return GroupKFold(n_folds, shuffle=True, random_state=seed)
    if stratify:
        return StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return KFold(n_folds, shuffle=True, random_state=seed)


def _split(splitter, n_folds: int, n_rows: int, y, groups, stratify_by: str | None) -> np.ndarray:
    """(n_rows,) fold of each row: the held-out part of the splitter's k-th split is fold k."""
    fold = np.full(n_rows, -1, dtype="int64")
    try:
        for k, (_, held_out) in enumerate(splitter.split(np.zeros((n_rows, 1)), y, groups)):
            fold[held_out] = k
    except ValueError as err:  # e.g. StratifiedKFold with every class smaller than n_folds
        raise InputError(f"cannot split into {n_folds} folds by '{stratify_by}': {err}") from err
    return fold


def _multilabel_folds(frame: pd.DataFrame, n_folds: int, seed: int, stratify_by: str,
                      group_by: str | None) -> np.ndarray:
    """Folds that hold each label's rows (or groups) in equal shares, by iterative stratification (Sechidis et
    al. 2011) on the 0/1 label matrix. With groups, each group counts as one example having the union of its rows'
    labels, so folds balance groups, not rows, and a group never lands in two folds."""
    # Imported here, as scikit-learn is: only fold assignment needs it.
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    indicator = _label_indicator(frame[stratify_by])
    if indicator.shape[1] == 0:
        raise InputError(f"{_SOURCE}: column '{stratify_by}' holds label tuples but no row has a label; "
                         "stratify by another column or none")
    y = indicator.to_numpy()
    if group_by:
        codes, _ = pd.factorize(frame[group_by])
        y = pd.DataFrame(y).groupby(codes).max().to_numpy()  # (groups, labels), groups in order of appearance
    if y.shape[1] == 1:  # the splitter needs two or more label columns: one label's presence and absence
        y = np.hstack([y, 1 - y])
    splitter = MultilabelStratifiedKFold(n_folds, shuffle=True, random_state=seed)
    fold = _split(splitter, n_folds, len(y), y, None, stratify_by)
    return fold[codes] if group_by else fold


def _holds_label_sets(frame: pd.DataFrame, column: str) -> bool:
    """Whether the column is multi-label: every value a tuple of labels. A mix of tuples and single values is an
    error rather than a guess."""
    is_tuple = frame[column].map(lambda value: isinstance(value, tuple)).to_numpy(dtype=bool)
    if is_tuple.any() and not is_tuple.all():
        single = row_labels(frame, np.flatnonzero(~is_tuple))
        raise InputError(f"{_SOURCE}: column '{column}' mixes label tuples with single values; single values in "
                         f"{len(single)} row(s): {format_rows(single)}")
    return bool(is_tuple.any())


def _label_indicator(column: pd.Series) -> pd.DataFrame:
    """(rows, labels) of 0/1, one column per distinct label in natural order (numbers within a label compare as
    numbers: 'NEP:2+' before 'NEP:16+'), the rows in the column's order."""
    labels = sorted(set().union(*column), key=_natural_order)
    position = {label: j for j, label in enumerate(labels)}
    matrix = np.zeros((len(column), len(labels)), dtype="int64")
    for i, row in enumerate(column):
        matrix[i, [position[label] for label in row]] = 1
    return pd.DataFrame(matrix, columns=labels)


def _natural_order(label) -> list:
    """'NEP:16+' → ['NEP:', 16, '+']: strings at even positions and ints at odd ones, so any two keys compare."""
    return [int(part) if k % 2 else part for k, part in enumerate(re.split(r"(\d+)", str(label)))]
