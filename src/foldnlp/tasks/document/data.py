"""Read document tables (train, test, sample submission, answers) into validated frames: every cell a str, ids
unique, label cells parsed by the task."""

from __future__ import annotations

import numpy as np
import pandas as pd

from foldnlp.tables import (
    check_ids_match_sample,
    check_not_blank,
    check_unique_ids,
    read_text_csv,
    refuse_bad_cells,
    require_columns,
)
from foldnlp.tasks.document.settings import DocumentSettings


def read_documents(path, settings: DocumentSettings, *, with_labels: bool, with_text: bool = True) -> pd.DataFrame:
    """id, the text column(s) and (with_labels) the label columns, then any other columns (a group_by column may
    name one). Texts may be empty (a blank review is still a document to predict); ids and labels may not."""
    frame = read_text_csv(path)
    text = [settings.text_column, *([settings.text_pair_column] if settings.text_pair_column else [])]
    columns = ["id", *(text if with_text else []), *(settings.label_columns if with_labels else [])]
    require_columns(frame, columns, path)
    check_not_blank(frame, ["id", *(settings.label_columns if with_labels else [])], path)
    check_unique_ids(frame, path)
    return frame[columns + [c for c in frame.columns if c not in columns]].reset_index(drop=True)


def read_test_documents(test_path, sample_path, settings: DocumentSettings, output_columns) -> tuple:
    """(test documents, sample submission or None); the sample must list the test ids and hold `output_columns`
    (the columns the submission fills: the label column, or one per class or target)."""
    test = read_documents(test_path, settings, with_labels=False)
    if sample_path is None:
        return test, None
    sample = read_text_csv(sample_path)
    require_columns(sample, ["id", *output_columns], sample_path)
    check_unique_ids(sample, sample_path)
    check_ids_match_sample(test, sample, test_path, sample_path)
    return test, sample


def parse_floats(frame: pd.DataFrame, columns, path) -> np.ndarray:
    """(n, len(columns)) float64 of numeric cells; InputError naming the column and rows of any other."""
    out = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=float)
        refuse_bad_cells(frame, ~np.isfinite(values), column, "must hold finite numbers", path)
        out[:, j] = values
    return out


def parse_binary(frame: pd.DataFrame, columns, path) -> np.ndarray:
    """(n, len(columns)) float32 0/1 of multi-label indicator cells (0/1, true/false, yes/no); InputError naming the
    column and rows of any other."""
    truth = {"1": 1.0, "1.0": 1.0, "true": 1.0, "yes": 1.0, "0": 0.0, "0.0": 0.0, "false": 0.0, "no": 0.0}
    out = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        values = frame[column].str.strip().str.lower().map(truth)
        refuse_bad_cells(frame, values.isna().to_numpy(), column, "must hold 0 or 1", path, what="multi-label column")
        out[:, j] = values.to_numpy(dtype=np.float32)
    return out


def sorted_labels(values) -> list[str]:
    """The distinct labels, numerically when all are integers ("2" < "10"), else as strings."""
    distinct = sorted({str(v).strip() for v in values})
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return distinct
