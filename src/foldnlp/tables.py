"""Read and validate input tables: every cell a str, UTF-8 checked, columns, blanks and ids named in errors."""

import difflib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows


def check_ids_match_sample(test: pd.DataFrame, sample: pd.DataFrame, test_path, sample_path) -> None:
    """Kaggle rejects a submission whose ids differ from the sample's, so catch it before inference."""
    differences = describe_id_differences(test["id"], sample["id"], str(test_path), str(sample_path))
    if differences:
        raise InputError(f"{test_path} and {sample_path} must list the same ids: {differences}")


def read_text_csv(path) -> pd.DataFrame:
    """Every cell as a str so ids like '0123' or '1e5' and texts like 'NA' survive unchanged."""
    text = read_utf8(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path}: not a readable CSV file ({err})") from err
    if frame.empty:
        raise InputError(f"{path}: no data rows")
    return frame


def require_columns(frame: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = [str(c) for c in frame.columns]
        hints = [f"'{match[0]}' for '{c}'" for c in missing
                 if (match := difflib.get_close_matches(c, found, n=1, cutoff=0.6)
                     or [f for f in found if f.strip().lower() == c])]
        hint = f" (renamed? found {', '.join(hints)}; names are case-sensitive)" if hints else ""
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)}{hint}; "
                         f"found columns: {', '.join(found)}")


def row_labels(frame: pd.DataFrame, positions, unit: str = "row") -> list[str]:
    """'row 3 (id abc)': the 1-based data row number finds the row in a viewer, the id finds it in code."""
    labels = []
    for pos in positions:
        row_id = frame["id"].iat[pos] if "id" in frame.columns else None
        has_id = isinstance(row_id, str) and row_id.strip()
        labels.append(f"{unit} {pos + 1} (id {row_id})" if has_id else f"{unit} {pos + 1}")
    return labels


def refuse_bad_cells(frame: pd.DataFrame, bad: np.ndarray, column: str, rule: str, source, *, what: str = "column",
                     show_values: bool = False, limit: int = 10) -> None:
    """InputError "{source}: column 'x' {rule}; bad in N row(s): row 3 (id a), ..." when any of bad ((n,) bool, one
    per row of frame) is set; show_values adds each bad cell's value, `what` names the column's kind."""
    if not bad.any():
        return
    positions = np.flatnonzero(bad)
    labels = row_labels(frame, positions)
    if show_values:
        labels = [f"{label} value {frame[column].iat[pos]!r}" for label, pos in zip(labels, positions)]
    raise InputError(f"{source}: {what} '{column}' {rule}; bad in {len(positions)} row(s): "
                     f"{format_rows(labels, limit)}")


def check_not_blank(frame: pd.DataFrame, columns, source, unit: str = "row") -> None:
    for column in columns:
        blank = frame[column].isna().to_numpy() | (frame[column].astype(str).str.strip() == "").to_numpy()
        if blank.any():
            labels = row_labels(frame, np.flatnonzero(blank), unit)
            raise InputError(f"{source}: column '{column}' is empty in {blank.sum()} {unit}(s): {format_rows(labels)}")


def check_unique_ids(frame: pd.DataFrame, source, unit: str = "row") -> None:
    duplicated = frame["id"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        at: dict[str, list[int]] = {}
        for pos in np.flatnonzero(duplicated):
            at.setdefault(frame["id"].iat[pos], []).append(pos + 1)
        parts = [f"id {row_id} at {unit}s {', '.join(map(str, rows))}" for row_id, rows in at.items()]
        raise InputError(f"{source}: column 'id' has {len(at)} duplicated id(s): {format_rows(parts)}")


def describe_id_differences(expected_ids, found_ids, expected_name: str, found_name: str) -> str:
    """'' when both hold the same set of ids, else counts and a few examples of each side's extras."""
    expected, found = dict.fromkeys(expected_ids), dict.fromkeys(found_ids)
    missing = [i for i in expected if i not in found]
    extra = [i for i in found if i not in expected]
    parts = []
    if missing:
        parts.append(f"{len(missing)} id(s) of {expected_name} missing from {found_name}: {format_rows(missing, 5)}")
    if extra:
        parts.append(f"{len(extra)} id(s) in {found_name} not in {expected_name}: {format_rows(extra, 5)}")
    return "; ".join(parts)


def read_utf8(path) -> str:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read file ({err.strerror or err})") from err
    try:
        # utf-8-sig: a BOM written by Excel or Notepad would otherwise rename the first column.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(f"{path}: not UTF-8 (byte 0x{raw[err.start]:02x} on line {line}); "
                         "re-save the file with UTF-8 encoding") from err
