"""Read competition CSVs and SQuAD-style external data into one canonical, validated QA frame."""

import difflib
import io
import json
import logging
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows

log = logging.getLogger(__name__)

QA_TRAIN_COLUMNS = ("id", "context", "question", "answer_text", "answer_start", "language")
QA_TEST_COLUMNS = ("id", "context", "question", "language")
SAMPLE_COLUMNS = ("id", "PredictionString")

# Up to 18 digits so the int64 conversion cannot overflow; surrounding blanks are tolerated.
_NON_NEGATIVE_INT = r"\s*\d{1,18}\s*"


def read_qa_csv(path, *, with_answers: bool) -> pd.DataFrame:
    """Read a chaii-style train (with_answers=True) or test CSV; required columns first, extra columns kept."""
    columns = QA_TRAIN_COLUMNS if with_answers else QA_TEST_COLUMNS
    frame = read_text_csv(path)
    require_columns(frame, columns, path)
    frame = frame[list(columns) + [c for c in frame.columns if c not in columns]]
    text_columns = [c for c in columns if c != "answer_start"]
    check_not_blank(frame, text_columns, path)
    check_unique_ids(frame, path)
    if with_answers:
        frame = frame.assign(answer_start=_parse_answer_start(frame, path))
        frame = _repair_answer_starts(frame, path)
    return frame.reset_index(drop=True)


def read_squad_json(path, language: str) -> pd.DataFrame:
    """SQuAD v1.1/v2-style JSON as a train frame: first answer per question, unanswerable questions skipped."""
    rows, skipped = [], 0
    try:
        for article in _load_squad_articles(path):
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    if qa.get("is_impossible") or not qa.get("answers"):
                        skipped += 1
                        continue
                    # Dev sets list one answer per annotator; the first is the canonical span.
                    answer = qa["answers"][0]
                    rows.append((str(qa["id"]), paragraph["context"], qa["question"],
                                 answer["text"], int(answer["answer_start"]), language))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{path}: not SQuAD-style JSON ({type(err).__name__}: {err}); expected data[].paragraphs[] "
                         "with context and qas[] of id, question, answers[].text/answer_start") from err
    if skipped:
        log.info("%s: skipped %d unanswerable question(s)", path, skipped)
    frame = pd.DataFrame(rows, columns=list(QA_TRAIN_COLUMNS))
    if frame.empty:
        raise InputError(f"{path}: no answerable questions")
    check_not_blank(frame, [c for c in QA_TRAIN_COLUMNS if c != "answer_start"], path, unit="question")
    check_unique_ids(frame, path, unit="question")
    return _repair_answer_starts(frame, path, unit="question")


def read_sample_submission(path) -> pd.DataFrame:
    """sample_submission.csv as columns id, PredictionString (an empty prediction is "")."""
    frame = read_text_csv(path)
    require_columns(frame, SAMPLE_COLUMNS, path)
    check_not_blank(frame, ["id"], path)
    check_unique_ids(frame, path)
    # A row written as just "id" (no trailing comma) parses as a missing prediction.
    return frame[list(SAMPLE_COLUMNS)].fillna("").reset_index(drop=True)


def check_ids_match_sample(test: pd.DataFrame, sample: pd.DataFrame, test_path, sample_path) -> None:
    """Kaggle rejects a submission whose ids differ from the sample's, so catch it before inference."""
    differences = describe_id_differences(test["id"], sample["id"], str(test_path), str(sample_path))
    if differences:
        raise InputError(f"{test_path} and {sample_path} must list the same ids: {differences}")


def read_text_csv(path) -> pd.DataFrame:
    """Every cell as a str so ids like '0123' or '1e5' and texts like 'NA' survive unchanged."""
    text = _read_utf8(path)
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


def _read_utf8(path) -> str:
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


def _load_squad_articles(path) -> list:
    try:
        document = json.loads(_read_utf8(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise InputError(f"{path}: expected a SQuAD-style JSON object with a 'data' list")
    return document["data"]


def _parse_answer_start(frame: pd.DataFrame, path) -> pd.Series:
    values = frame["answer_start"].fillna("")
    bad = ~values.str.fullmatch(_NON_NEGATIVE_INT).to_numpy()
    if bad.any():
        positions = np.flatnonzero(bad)
        labels = [f"{label} value {values.iat[pos]!r}" for label, pos in zip(row_labels(frame, positions), positions)]
        raise InputError(f"{path}: column 'answer_start' must be a non-negative integer; "
                         f"bad in {len(positions)} row(s): {format_rows(labels)}")
    return values.str.strip().astype("int64")


def _repair_answer_starts(frame: pd.DataFrame, path, unit: str = "row") -> pd.DataFrame:
    """Point answer_start at the occurrence of answer_text nearest to it; raise where the text never occurs.

    An answer that matches the context only once Unicode normalisation (NFC vs NFD) and zero-width/format
    characters (ZWJ, ZWNJ, BOM, soft hyphen) are ignored is replaced by the context's own spelling of it, so that
    labels are exact character spans and predictions (always context substrings) can match the truth.
    """
    starts = frame["answer_start"].to_numpy(dtype="int64", copy=True)
    answers = frame["answer_text"].tolist()
    repaired, respelled, absent = [], [], []
    for pos, (context, answer) in enumerate(zip(frame["context"], answers)):
        if context[starts[pos]: starts[pos] + len(answer)] == answer:
            continue
        nearest = _nearest_occurrence(context, answer, starts[pos])
        if nearest is not None:
            starts[pos] = nearest
            repaired.append(pos)
            continue
        span = _nearest_canonical_occurrence(context, answer, starts[pos])
        if span is None:
            absent.append(pos)
        else:
            starts[pos], answers[pos] = span[0], context[span[0]: span[1]]
            respelled.append(pos)
    if absent:
        raise InputError(f"{path}: column 'answer_text' does not occur in the context in {len(absent)} {unit}(s): "
                         f"{format_rows(row_labels(frame, absent, unit))}")
    if repaired:
        log.warning("%s: repaired answer_start in %d %s(s) to the nearest occurrence of answer_text (ids: %s)",
                    path, len(repaired), unit, format_rows(frame["id"].iloc[repaired], limit=5))
    if respelled:
        log.warning("%s: answer_text differs from the context only in Unicode normalisation or zero-width characters "
                    "in %d %s(s); replaced by the context's spelling (ids: %s)", path, len(respelled), unit,
                    format_rows(frame["id"].iloc[respelled], limit=5))
    return frame.assign(answer_start=starts, answer_text=answers)


def _nearest_occurrence(context: str, answer: str, start: int) -> int | None:
    occurrences = []
    at = context.find(answer)
    while at != -1:
        occurrences.append(at)
        at = context.find(answer, at + 1)
    # Ties go to the earlier occurrence so the result does not depend on search order.
    return min(occurrences, key=lambda o: (abs(o - start), o), default=None)


def canonical_view(text: str) -> tuple[str, np.ndarray]:
    """(canonical text, origin): the text in NFC without format characters (Unicode category Cf: zero-width
    joiners and spaces, BOM, soft hyphen); origin[j] is the index in text where canonical character j begins.

    Works run by run (whitespace and non-whitespace): normalisation never composes across whitespace, and a run
    that normalisation leaves unchanged (nearly all) maps one to one.
    """
    pieces, origin = [], []
    for run in re.finditer(r"\s+|\S+", text):
        kept = [i for i, ch in enumerate(run.group()) if unicodedata.category(ch) != "Cf"]
        plain = "".join(run.group()[i] for i in kept)
        normal = unicodedata.normalize("NFC", plain)
        if normal == plain:
            origin.extend(run.start() + i for i in kept)
        else:  # canonical character j begins at the first kept character whose prefix normalises past j
            lengths = [len(unicodedata.normalize("NFC", plain[: k + 1])) for k in range(len(plain))]
            origin.extend(run.start() + kept[next(k for k, n in enumerate(lengths) if n > j)]
                          for j in range(len(normal)))
        pieces.append(normal)
    return "".join(pieces), np.array(origin, dtype=np.int64)


def _nearest_canonical_occurrence(context: str, answer: str, start: int) -> tuple[int, int] | None:
    """(start, end) in context of the occurrence of answer nearest to start, compared in canonical form."""
    wanted = canonical_view(answer)[0]
    if not wanted:
        return None
    view, origin = canonical_view(context)
    at = _nearest_occurrence(view, wanted, int(np.searchsorted(origin, start)))
    if at is None:
        return None
    end = at + len(wanted)
    begin, stop = int(origin[at]), int(origin[end]) if end < len(origin) else len(context)
    while stop > begin and unicodedata.category(context[stop - 1]) == "Cf":  # no trailing zero-width characters
        stop -= 1
    return begin, stop
