"""Read chaii-style CSVs and SQuAD-style external data into one canonical, validated QA frame."""

import json
import logging
import re
import unicodedata

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows
from foldnlp.tables import (
    check_not_blank,
    check_unique_ids,
    read_text_csv,
    read_utf8,
    refuse_bad_cells,
    require_columns,
    row_labels,
)

log = logging.getLogger(__name__)

QA_TRAIN_COLUMNS = ("id", "context", "question", "answer_text", "answer_start", "language")
QA_TEST_COLUMNS = ("id", "context", "question", "language")
SAMPLE_COLUMNS = ("id", "PredictionString")
ANSWER_COLUMNS = ("id", "answer_text")

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


def read_answers_csv(path) -> pd.DataFrame:
    """Gold answers of test ids (id, answer_text; extra columns kept, e.g. a whole training-format CSV)."""
    frame = read_text_csv(path)
    require_columns(frame, ANSWER_COLUMNS, path)
    frame = frame[list(ANSWER_COLUMNS) + [c for c in frame.columns if c not in ANSWER_COLUMNS]]
    check_not_blank(frame, list(ANSWER_COLUMNS), path)
    check_unique_ids(frame, path)
    return frame.reset_index(drop=True)


def _load_squad_articles(path) -> list:
    try:
        document = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise InputError(f"{path}: expected a SQuAD-style JSON object with a 'data' list")
    return document["data"]


def _parse_answer_start(frame: pd.DataFrame, path) -> pd.Series:
    values = frame["answer_start"].fillna("")
    bad = ~values.str.fullmatch(_NON_NEGATIVE_INT).to_numpy()
    refuse_bad_cells(frame.assign(answer_start=values), bad, "answer_start", "must be a non-negative integer", path,
                     show_values=True)
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
