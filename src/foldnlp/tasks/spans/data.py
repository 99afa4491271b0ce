"""Read span-segmentation data into one example table, `id, text, spans`: `text` is the document and `spans` its
true spans, a list of (class, first_word, last_word) tuples sorted by first word. Words are the document's whitespace
words (str.split(), numbered from 0) and last_word is inclusive. Two layouts are read: Feedback Prize 2021 (essays
<id>.txt beside a train.csv of character offsets) and BIO token files (token<TAB>tag, a blank line between
sentences). Also the word-level BIO labels a model trains on, and the Feedback Prize submission format."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows
from foldnlp.tables import check_not_blank, read_text_csv, read_utf8, refuse_bad_cells, require_columns, row_labels

log = logging.getLogger(__name__)

FEEDBACK_TRAIN_COLUMNS = ("id", "discourse_start", "discourse_end", "discourse_type")
SUBMISSION_COLUMNS = ("id", "class", "predictionstring")

# \S is the complement of str.isspace(), so these words are exactly str.split()'s.
_WORD = re.compile(r"\S+")
# Kaggle's train.csv writes offsets as integer-valued floats ("229.0"); up to 18 digits cannot overflow int64.
_OFFSET = r"\s*[+-]?\d{1,18}(?:\.0*)?\s*"
_PREFIXED_TAG = re.compile(r"[BI]-\S+")


def words_with_offsets(text: str) -> tuple[list[str], np.ndarray]:
    """The whitespace words of `text` (str.split() semantics, numbered from 0) and their (n_words, 2) int64
    [start, end) character offsets: text[start:end] is the word."""
    matches = list(_WORD.finditer(text))
    return [m.group() for m in matches], np.array([m.span() for m in matches], dtype=np.int64).reshape(-1, 2)


def read_feedback_train(train_csv, texts_dir=None) -> pd.DataFrame:
    """One row per essay named in train.csv, sorted by id: `id`, `text` (<id>.txt from texts_dir, default train/
    beside the CSV) and `spans`, one per discourse row.

    A discourse row covers the words whose [start, end) overlaps [discourse_start, discourse_end) by at least one
    character, so a row that starts or ends inside a word keeps that word. Only id, discourse_start, discourse_end and
    discourse_type are read; predictionstring, where present, is ignored (recomputed from the offsets, whose spans are
    contiguous by construction). Offsets may be written as integer-valued floats ("229.0"), as Kaggle's file does.
    """
    train_csv = Path(train_csv)
    texts_dir = train_csv.parent / "train" if texts_dir is None else Path(texts_dir)
    frame = read_text_csv(train_csv)
    require_columns(frame, FEEDBACK_TRAIN_COLUMNS, train_csv)
    check_not_blank(frame, ["id", "discourse_type"], train_csv)
    starts = _parse_offsets(frame, "discourse_start", train_csv)
    ends = _parse_offsets(frame, "discourse_end", train_csv)
    rows_of: dict[str, list[int]] = {}
    for pos, essay_id in enumerate(frame["id"]):
        rows_of.setdefault(essay_id, []).append(pos)
    ids = sorted(rows_of)
    texts = _read_essays(ids, texts_dir, train_csv)
    lengths = frame["id"].map({i: len(t) for i, t in texts.items()}).to_numpy()
    outside = np.flatnonzero((starts < 0) | (ends > lengths) | (starts >= ends))
    if len(outside):
        labels = [f"{label} [{starts[pos]}, {ends[pos]}) in {lengths[pos]} characters"
                  for label, pos in zip(row_labels(frame, outside), outside)]
        raise InputError(f"{train_csv}: {len(outside)} discourse row(s) outside their essay (need 0 <= discourse_start "
                         f"< discourse_end <= essay length): {format_rows(labels, 5)}")
    first, last = np.empty(len(frame), np.int64), np.empty(len(frame), np.int64)
    for essay_id in ids:
        rows = np.array(rows_of[essay_id])
        offsets = words_with_offsets(texts[essay_id])[1]
        first[rows] = np.searchsorted(offsets[:, 1], starts[rows], side="right")
        last[rows] = np.searchsorted(offsets[:, 0], ends[rows], side="left") - 1
    wordless = np.flatnonzero(first > last)
    if len(wordless):
        raise InputError(f"{train_csv}: {len(wordless)} discourse row(s) cover only whitespace, no word: "
                         f"{format_rows(row_labels(frame, wordless), 5)}")
    classes = frame["discourse_type"].str.strip().tolist()
    spans, overlaps = [], []
    for essay_id in ids:
        rows = sorted(rows_of[essay_id], key=lambda pos: (first[pos], last[pos]))
        overlaps += [f"id {essay_id}: {_discourse_row(frame, a)} and {_discourse_row(frame, b)} share "
                     f"{_words(first[b], min(last[a], last[b]))}" for a, b in _overlapping_pairs(rows, first, last)]
        spans.append([(classes[pos], int(first[pos]), int(last[pos])) for pos in rows])
    if overlaps:
        raise InputError(f"{train_csv}: {len(overlaps)} pair(s) of discourse rows overlap in words, which one label "
                         f"per word cannot hold: {format_rows(overlaps, 5)}")
    return pd.DataFrame({"id": ids, "text": [texts[i] for i in ids], "spans": spans})


def read_feedback_test(texts_dir) -> pd.DataFrame:
    """`id, text` for every <id>.txt in texts_dir, sorted by id."""
    texts_dir = Path(texts_dir)
    if not texts_dir.is_dir():
        raise InputError(f"{texts_dir}: essay folder does not exist")
    paths = sorted((p for p in texts_dir.glob("*.txt") if p.is_file()), key=lambda p: p.stem)
    if not paths:
        raise InputError(f"{texts_dir}: no essays (<id>.txt files) in this folder")
    return pd.DataFrame({"id": [p.stem for p in paths], "text": [read_utf8(p) for p in paths]})


def classes_of(train_frame: pd.DataFrame) -> list[str]:
    """The distinct span classes of an example table, sorted."""
    return sorted({cls for spans in train_frame["spans"] for cls, _, _ in spans})


def span_count_labels(spans_per_document) -> list[tuple[str, ...]]:
    """Per document, the labels '<class>:<t>+' for every threshold t in 1, 2, 4, 8, ... that its number of spans of
    that class reaches: 3 Claims and no Lead give ('Claim:1+', 'Claim:2+'). Cumulative, so stratifying on them
    balances both which classes a document has (the ':1+' labels) and how many spans of each; doubling thresholds
    keep the label count small (a class with up to 20 spans per document makes 5 labels)."""
    labels = []
    for spans in spans_per_document:
        counts = Counter(cls for cls, _, _ in spans)
        labels.append(tuple(sorted(f"{cls}:{1 << k}+" for cls, n in counts.items() for k in range(n.bit_length()))))
    return labels


def predictionstring(first_word: int, last_word: int) -> str:
    """The Feedback Prize predictionstring of a span: its word numbers separated by spaces, "3 4 5"."""
    if not 0 <= first_word <= last_word:
        raise ValueError(f"a span needs 0 <= first_word <= last_word, got {first_word}, {last_word}")
    return " ".join(map(str, range(first_word, last_word + 1)))


def spans_to_submission(ids, spans) -> pd.DataFrame:
    """A Feedback Prize submission, `id, class, predictionstring`, one row per span; `spans[k]` holds the
    (class, first_word, last_word) spans of `ids[k]`. A document without spans has no row."""
    ids, spans = list(ids), list(spans)
    if len(ids) != len(spans):
        raise ValueError(f"{len(ids)} ids but {len(spans)} span lists")
    rows = [(i, cls, predictionstring(a, b)) for i, doc in zip(ids, spans) for cls, a, b in doc]
    return pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS))


def submission_to_spans(frame: pd.DataFrame, source="submission") -> dict[str, list[tuple[str, int, int]]]:
    """{id: its (class, first_word, last_word) spans sorted by first word} from a submission-format frame. A row with
    empty class and predictionstring (as in sample_submission.csv) lists an id without spans.

    Word numbers may come in any order but must form one contiguous run: a (first, last) span cannot hold a gap, so a
    non-contiguous predictionstring is refused rather than widened or split (either would change its score). Truth
    read by read_feedback_train is contiguous by construction; a few of Kaggle's own train.csv predictionstrings are
    not, which is why that column is never read.
    """
    require_columns(frame, SUBMISSION_COLUMNS, source)
    classes = frame["class"].fillna("").astype(str).str.strip().tolist()
    strings = frame["predictionstring"].fillna("").astype(str).tolist()
    out: dict[str, list[tuple[str, int, int]]] = {}
    malformed, gapped = [], []
    for pos, (doc_id, cls, string) in enumerate(zip(frame["id"].astype(str), classes, strings)):
        doc = out.setdefault(doc_id, [])
        words = string.split()
        if not cls and not words:
            continue
        if not cls or not words or not all(w.isascii() and w.isdigit() for w in words):
            malformed.append(pos)
            continue
        numbers = sorted(int(w) for w in words)
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            gapped.append(pos)
            continue
        doc.append((cls, numbers[0], numbers[-1]))
    if malformed:
        raise InputError(f"{source}: {len(malformed)} row(s) need a class and a predictionstring of word numbers "
                         f"(\"3 4 5\"), or neither: {format_rows(row_labels(frame, malformed), 5)}")
    if gapped:
        raise InputError(f"{source}: {len(gapped)} row(s) have a non-contiguous predictionstring, which a (class, "
                         f"first_word, last_word) span cannot hold: {format_rows(row_labels(frame, gapped), 5)}")
    return {doc_id: sorted(doc, key=lambda s: (s[1], s[2], s[0])) for doc_id, doc in out.items()}


def bio_channels(classes) -> tuple[str, ...]:
    """The word-label channels: ("O", "B-<c1>", "I-<c1>", "B-<c2>", "I-<c2>", ...) in the order of `classes`."""
    return ("O", *(f"{prefix}-{cls}" for cls in classes for prefix in "BI"))


def bio_labels(n_words: int, spans, classes) -> np.ndarray:
    """(n_words,) int64 index into bio_channels(classes) of each word: B-<class> on a span's first word, I-<class>
    on the rest, O outside every span."""
    index = {cls: k for k, cls in enumerate(classes)}
    labels = np.zeros(n_words, dtype=np.int64)
    for cls, first, last in spans:
        if cls not in index:
            raise ValueError(f"span class {cls!r} is not one of the classes {list(classes)}")
        if not 0 <= first <= last < n_words:
            raise ValueError(f"span {(cls, first, last)} is outside words 0-{n_words - 1}")
        if labels[first: last + 1].any():
            raise ValueError(f"span {(cls, first, last)} overlaps another span")
        labels[first] = 1 + 2 * index[cls]
        labels[first + 1: last + 1] = 2 + 2 * index[cls]
    return labels


def spans_from_bio(tags) -> list[tuple[str, int, int]]:
    """The (class, first_word, last_word) spans of a sequence of BIO tag strings ("O", "B-X", "I-X"). An I-X that
    follows O, another class or nothing starts a span of X, as a B-X would."""
    return _bio_spans(tags)[0]


def read_bio_file(path, sentences_per_document: int) -> pd.DataFrame:
    """An example table (`id, text, spans`) from a BIO token file: `token<TAB>tag` lines (the last tab-separated
    field is the tag), a blank line between sentences. Each run of `sentences_per_document` consecutive sentences
    (fewer in the last) is one document, id `<file stem>-<k:05d>` from k = 0, whose text is its tokens joined by
    single spaces, so its whitespace words are the file's tokens. A span never crosses a sentence boundary.

    Tolerated with one counted warning each: tags without a B-/I- prefix ("-", "-NEL") read as O, lines without a tab
    skipped, I-X after O or another class starting a span of X. A token that is empty or holds whitespace is an
    InputError (it would split into other words).
    """
    path = Path(path)
    if isinstance(sentences_per_document, bool) or not isinstance(sentences_per_document, int) \
            or sentences_per_document < 1:
        raise InputError(f"sentences_per_document must be a positive integer, got {sentences_per_document!r}")
    sentences: list[tuple[list[str], list[str], list[int]]] = []
    tokens, tags, numbers = [], [], []
    untagged, unprefixed, spaced = [], [], []
    for number, line in enumerate(read_utf8(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags, numbers))
                tokens, tags, numbers = [], [], []
            continue
        fields = line.split("\t")
        if len(fields) == 1:
            untagged.append(number)
            continue
        token, tag = fields[0], fields[-1].strip()
        if token.split() != [token]:
            spaced.append(number)
        if tag != "O" and not _PREFIXED_TAG.fullmatch(tag):
            unprefixed.append((number, tag))
            tag = "O"
        tokens.append(token)
        tags.append(tag)
        numbers.append(number)
    if tokens:
        sentences.append((tokens, tags, numbers))
    if spaced:
        raise InputError(f"{path}: {len(spaced)} token(s) are empty or hold whitespace, so the document text would "
                         f"not split back into the file's tokens: lines {format_rows(spaced, 5)}")
    if not sentences:
        raise InputError(f"{path}: no tokens (expected token<TAB>tag lines, a blank line between sentences)")
    if untagged:
        log.warning("%s: skipped %d line(s) without a tab (token<TAB>tag expected): lines %s",
                    path, len(untagged), format_rows(untagged, 5))
    if unprefixed:
        log.warning("%s: read %d tag(s) without a B-/I- prefix as O (%s): lines %s", path, len(unprefixed),
                    ", ".join(repr(t) for t in sorted({t for _, t in unprefixed})[:5]),
                    format_rows([n for n, _ in unprefixed], 5))
    ids, texts, spans, orphans = [], [], [], []
    for k in range(0, len(sentences), sentences_per_document):
        words, doc_spans = [], []
        for sentence_tokens, sentence_tags, sentence_numbers in sentences[k: k + sentences_per_document]:
            sentence_spans, sentence_orphans = _bio_spans(sentence_tags)
            doc_spans += [(cls, len(words) + a, len(words) + b) for cls, a, b in sentence_spans]
            orphans += [sentence_numbers[j] for j in sentence_orphans]
            words += sentence_tokens
        ids.append(f"{path.stem}-{k // sentences_per_document:05d}")
        texts.append(" ".join(words))
        spans.append(doc_spans)
    if orphans:
        log.warning("%s: %d I- tag(s) follow O, another class or a sentence start; each starts a new span: lines %s",
                    path, len(orphans), format_rows(orphans, 5))
    return pd.DataFrame({"id": ids, "text": texts, "spans": spans})


def _bio_spans(tags) -> tuple[list[tuple[str, int, int]], list[int]]:
    """(spans, positions of the I- tags that start a span) of a sequence of BIO tag strings."""
    spans: list[list] = []
    orphans = []
    current = None
    for k, tag in enumerate(tags):
        if tag == "O":
            current = None
            continue
        prefix, _, cls = str(tag).partition("-")
        if prefix not in ("B", "I") or not cls:
            raise ValueError(f"tag {tag!r} at position {k} is neither O, B-<class> nor I-<class>")
        if prefix == "I" and current is not None and current[0] == cls:
            current[2] = k
            continue
        if prefix == "I":
            orphans.append(k)
        current = [cls, k, k]
        spans.append(current)
    return [(cls, first, last) for cls, first, last in spans], orphans


def _parse_offsets(frame: pd.DataFrame, column: str, path) -> np.ndarray:
    """(n,) int64 character offsets of `column`; InputError naming the rows of any cell that is not a whole number."""
    values = frame[column]
    refuse_bad_cells(frame, ~values.str.fullmatch(_OFFSET).to_numpy(), column, "must hold whole character offsets",
                     path, show_values=True, limit=5)
    return np.array([int(v.strip().split(".")[0]) for v in values], dtype=np.int64)


def _read_essays(ids, texts_dir: Path, source) -> dict[str, str]:
    if not texts_dir.is_dir():
        raise InputError(f"{source}: essay folder {texts_dir} does not exist (pass texts_dir, or put the essays "
                         "<id>.txt in train/ beside the CSV)")
    paths = {essay_id: texts_dir / f"{essay_id}.txt" for essay_id in ids}
    missing = [path.name for path in paths.values() if not path.is_file()]
    if missing:
        raise InputError(f"{source}: {len(missing)} essay file(s) missing from {texts_dir}: {format_rows(missing, 5)}")
    return {essay_id: read_utf8(path) for essay_id, path in paths.items()}


def _overlapping_pairs(rows, first: np.ndarray, last: np.ndarray) -> list[tuple[int, int]]:
    """(a, b) for each row b that shares words with an earlier row a; `rows` sorted by (first, last), a is the earlier
    row reaching furthest."""
    pairs, reach = [], None
    for pos in rows:
        if reach is not None and first[pos] <= last[reach]:
            pairs.append((reach, pos))
        if reach is None or last[pos] > last[reach]:
            reach = pos
    return pairs


def _words(first: int, last: int) -> str:
    return f"word {first}" if first == last else f"words {first}-{last}"


def _discourse_row(frame: pd.DataFrame, pos: int) -> str:
    """'row 4 (discourse_id 1622627660524.0)', or 'row 4' where the file has no discourse_id column."""
    if "discourse_id" in frame.columns:
        return f"row {pos + 1} (discourse_id {frame['discourse_id'].iat[pos]})"
    return f"row {pos + 1}"
