"""Word scores of span segmentation to spans, and per-class decoding rules fit on out-of-fold scores.

Scores here are per *word* (an essay's whitespace-separated tokens, numbered from 0) × BIO channels: "O" and, for each
class X, "B-X" (the first word of a span of X) and "I-X" (a later word), as log-probabilities. The classes are taken
in the order of their first channel.

Decoding: each word takes its most probable channel (the first of tied ones). A span of X starts at a B-X word, or at
an I-X word that does not continue a span of X (after O, after another class, or first in the document), and goes
on through the I-X words that follow. Its score is its mean probability: the mean over its words of P(B-X) + P(I-X).
A rule per class (ClassDecoding) keeps the spans long enough and probable enough; short spans are the commonest
false positives, and how short is too short differs by class, so fit_rules picks each class's rule on out-of-fold
scores and crossfit_f1 says how much of that gain is real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows
from foldnlp.scores import LOGPROB, Scores
from foldnlp.tasks.spans.metrics import overlap_f1, subset_f1

GRID_MIN_WORDS = (1, 2, 3, 4, 5, 6, 8, 10, 15)
GRID_MIN_PROB = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
SPAN_COLUMNS = ("id", "class", "predictionstring", "score")


@dataclass(frozen=True)
class ClassDecoding:
    """Which decoded spans of one class are kept: those of at least min_words words whose mean probability is at
    least min_mean_prob. The default keeps every span."""

    min_words: int = 1
    min_mean_prob: float = 0.0

    def __post_init__(self):
        if isinstance(self.min_words, bool) or not isinstance(self.min_words, (int, np.integer)) \
                or self.min_words < 1:
            raise InputError(f"min_words must be an integer >= 1; got {self.min_words!r}")
        if isinstance(self.min_mean_prob, bool) or not isinstance(self.min_mean_prob, (int, float, np.floating)) \
                or not 0 <= self.min_mean_prob <= 1:
            raise InputError(f"min_mean_prob must be a number in [0, 1]; got {self.min_mean_prob!r}")


@dataclass(frozen=True)
class _Spans:
    """Candidate spans, (n,) arrays: document position, class position, first and last word (inclusive, counted
    in the document), mean probability."""

    doc: np.ndarray
    cls: np.ndarray
    first: np.ndarray
    last: np.ndarray
    score: np.ndarray

    @property
    def n_words(self) -> np.ndarray:
        return self.last - self.first + 1

    def where(self, mask: np.ndarray) -> _Spans:
        return _Spans(self.doc[mask], self.cls[mask], self.first[mask], self.last[mask], self.score[mask])


def bio_classes(channels) -> tuple[str, ...]:
    """The classes of BIO channels, in the order of their first channel; InputError unless the channels are one
    "O" and, for each class, one "B-<class>" and one "I-<class>"."""
    return _bio(channels)[0]


def decode_spans(word_log_probs: np.ndarray, channels: tuple[str, ...],
                 rules: dict[str, ClassDecoding]) -> list[tuple[str, int, int, float]]:
    """The spans of one document, in word order: (class, first word, last word inclusive, mean probability).

    word_log_probs: (n_words, C) log-probabilities of the C BIO channels. rules: ClassDecoding per class; a class
    without one keeps all its spans (ClassDecoding()); a rule for a class the channels lack is an InputError.
    """
    logp = np.asarray(word_log_probs)
    if logp.ndim != 2 or logp.shape[1] != len(channels):
        raise ValueError(f"word_log_probs must be (n_words, {len(channels)}) for channels {tuple(channels)}; "
                         f"got {logp.shape}")
    classes = bio_classes(channels)
    spans = _candidates(logp, np.array([0, len(logp)], dtype=np.int64), channels)
    spans = spans.where(_kept(spans, classes, rules))
    return [(classes[c], int(a), int(b), float(s))
            for c, a, b, s in zip(spans.cls.tolist(), spans.first.tolist(), spans.last.tolist(), spans.score.tolist())]


def decode_documents(scores: Scores, rules: dict[str, ClassDecoding]) -> pd.DataFrame:
    """The spans of every document of word scores as a span table with columns id, class, predictionstring (the
    span's words, "3 4 5") and score (its mean probability), documents in scores.ids order and each one's spans in
    word order. Decoded as decode_spans does, all documents at once."""
    _check_scores(scores)
    classes = bio_classes(scores.channels)
    spans = _candidates(scores.values, scores.offsets, scores.channels)
    return _table(spans.where(_kept(spans, classes, rules)), scores.ids, classes)


def fit_rules(truth: pd.DataFrame, scores: Scores, classes, *, grid_min_words=GRID_MIN_WORDS,
              grid_min_prob=GRID_MIN_PROB) -> dict[str, ClassDecoding]:
    """Per class of `classes`, the rule of the grid (every min_words × every min_mean_prob) that maximises that
    class's overlap F1 (metrics.overlap_f1) of the spans decoded from `scores` (out-of-fold word scores) against
    `truth` (a span table of those documents; documents of scores without a row have no true span).

    The documents are decoded once, keeping every span, and each grid point keeps its subset of those spans (the
    same spans decoding with that rule gives). Ties keep the earlier grid point (min_words outer, then
    min_mean_prob, each in the order given), so with ascending grids the looser rule; a class absent from the truth
    has nothing to fit and gets the loosest rule (the smallest of each grid). Classes are scored independently, so
    each class, and the macro F1, scores at least what any one grid point gives all classes on these data, the
    loosest included. Classes of the channels not in `classes` are not fit (they decode with ClassDecoding()).
    """
    _check_scores(scores)
    channel_classes = bio_classes(scores.channels)
    classes = list(classes)
    unknown = [c for c in classes if c not in channel_classes]
    if unknown:
        raise InputError(f"cannot fit decoding rules of class(es) {', '.join(map(str, unknown))}: the scores' "
                         f"classes are {', '.join(channel_classes)}")
    grid = [ClassDecoding(w, p) for w in grid_min_words for p in grid_min_prob]
    if not grid:
        raise InputError("fit_rules needs at least one min_words and one min_mean_prob to try")
    _check_truth_ids(truth, scores)
    spans = _candidates(scores.values, scores.offsets, scores.channels)
    n_words = spans.n_words
    keep = np.stack([(n_words >= rule.min_words) & (spans.score >= rule.min_mean_prob) for rule in grid])
    truth_classes, f1 = subset_f1(truth, _table(spans, scores.ids, channel_classes), keep)
    loosest = ClassDecoding(min(grid_min_words), min(grid_min_prob))
    column = {c: k for k, c in enumerate(truth_classes)}
    return {c: grid[int(np.argmax(f1[:, column[c]]))] if c in column else loosest for c in classes}


def crossfit_f1(truth: pd.DataFrame, scores: Scores, folds: pd.Series, classes, *, grid_min_words=GRID_MIN_WORDS,
                grid_min_prob=GRID_MIN_PROB) -> tuple[float, dict[str, float]]:
    """overlap_f1 with rules fit out of fold, the honest estimate of fitting: each fold's documents are decoded with
    rules that fit_rules fit on the other folds' documents, and all predictions are scored together against truth.
    Set beside the in-sample fit (fit on all documents and scored on them), it shows how much of the gain is
    overfit. folds: fold per document id (index: id), covering every id of scores, at least two distinct."""
    _check_scores(scores)
    _check_truth_ids(truth, scores)
    ids = scores.ids
    fold = pd.Series(folds.to_numpy(), index=folds.index.astype(str)).reindex(ids)
    missing = ids[fold.isna().to_numpy()]
    if len(missing):
        raise InputError(f"folds has no fold for document id(s) {format_rows(missing)}")
    fold = fold.to_numpy()
    distinct = pd.unique(fold)
    if len(distinct) < 2:
        raise InputError(f"crossfit_f1 needs documents of at least 2 folds; all {len(ids)} are in fold {distinct[0]}")
    truth_ids = truth["id"].astype(str)
    predictions = []
    for k in sorted(distinct):
        train = ids[fold != k]
        rules = fit_rules(truth[truth_ids.isin(train).to_numpy()], scores.select(train), classes,
                          grid_min_words=grid_min_words, grid_min_prob=grid_min_prob)
        predictions.append(decode_documents(scores.select(ids[fold == k]), rules))
    return overlap_f1(truth, pd.concat(predictions, ignore_index=True))


def _bio(channels) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(classes, B column of each class, I column of each class)."""
    channels = tuple(channels)
    classes: list[str] = []
    columns: dict[tuple[str, str], int] = {}
    bad = []
    for j, name in enumerate(channels):
        if name == "O":
            continue
        prefix, _, cls = str(name).partition("-")
        if prefix not in ("B", "I") or not cls or (prefix, cls) in columns:
            bad.append(name)
            continue
        columns[prefix, cls] = j
        if cls not in classes:
            classes.append(cls)
    unpaired = [c for c in classes if ("B", c) not in columns or ("I", c) not in columns]
    if bad or unpaired or channels.count("O") != 1:
        raise InputError(f"BIO channels must be one 'O' and one 'B-<class>' and 'I-<class>' per class; got "
                         f"{', '.join(map(str, channels))}")
    return (tuple(classes), np.array([columns["B", c] for c in classes], dtype=np.int64),
            np.array([columns["I", c] for c in classes], dtype=np.int64))


def _candidates(values: np.ndarray, offsets: np.ndarray, channels) -> _Spans:
    """Every span of documents stored flat (values (offsets[-1], C) log-probabilities; document i owns rows
    offsets[i]:offsets[i + 1]), before any rule."""
    classes, b_col, i_col = _bio(channels)
    n = len(values)
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return _Spans(empty, empty, empty, empty, np.zeros(0))
    tag = np.asarray(values).argmax(axis=1)
    channel_class = np.full(len(channels), -1, dtype=np.int64)
    channel_class[b_col] = channel_class[i_col] = np.arange(len(classes))
    is_begin = np.zeros(len(channels), dtype=bool)
    is_begin[b_col] = True
    cls, begin = channel_class[tag], is_begin[tag]
    document_start = np.zeros(n, dtype=bool)
    document_start[offsets[:-1][np.diff(offsets) > 0]] = True
    previous = np.concatenate([[-1], cls[:-1]])
    start = (cls >= 0) & (begin | (previous != cls) | document_start)
    first = np.flatnonzero(start)
    words = np.flatnonzero(cls >= 0)
    span = (np.cumsum(start) - 1)[words]  # every tagged word's span: the last start at or before it
    length = np.bincount(span, minlength=len(first))
    k = cls[words]
    logp = np.asarray(values[words], dtype=np.float64)
    rows = np.arange(len(words))
    prob = np.exp(logp[rows, b_col[k]]) + np.exp(logp[rows, i_col[k]])
    score = np.bincount(span, weights=prob, minlength=len(first)) / length
    doc = np.searchsorted(offsets, first, side="right") - 1  # an empty document shares its offset with the next
    local = first - offsets[doc]
    return _Spans(doc.astype(np.int64), cls[first], local, local + length - 1, score)


def _kept(spans: _Spans, classes: tuple[str, ...], rules: dict[str, ClassDecoding]) -> np.ndarray:
    unknown = [c for c in rules if c not in classes]
    if unknown:
        raise InputError(f"decoding rules name class(es) {', '.join(map(str, unknown))} that the channels lack; "
                         f"their classes are {', '.join(classes)}")
    for c, rule in rules.items():
        if not isinstance(rule, ClassDecoding):
            raise InputError(f"the decoding rule of class {c} must be a ClassDecoding; got {rule!r}")
    chosen = [rules.get(c, ClassDecoding()) for c in classes]
    min_words = np.array([r.min_words for r in chosen], dtype=np.int64)
    min_prob = np.array([r.min_mean_prob for r in chosen], dtype=np.float64)
    return (spans.n_words >= min_words[spans.cls]) & (spans.score >= min_prob[spans.cls])


def _table(spans: _Spans, ids: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    numbers = [str(i) for i in range(int(spans.last.max(initial=-1)) + 1)]
    strings = [" ".join(numbers[a : b + 1]) for a, b in zip(spans.first.tolist(), spans.last.tolist())]
    return pd.DataFrame({"id": np.asarray(ids, dtype=object)[spans.doc] if len(spans.doc) else [],
                         "class": np.asarray(classes, dtype=object)[spans.cls] if len(spans.cls) else [],
                         "predictionstring": strings, "score": spans.score}, columns=list(SPAN_COLUMNS))


def _check_scores(scores: Scores) -> None:
    if scores.unit != "word" or scores.kind != LOGPROB:
        raise InputError(f"span decoding needs log-probabilities per word; got {scores.kind} scores per {scores.unit}")


def _check_truth_ids(truth: pd.DataFrame, scores: Scores) -> None:
    if "id" not in truth.columns:
        raise InputError("truth lacks column id; a span table has columns id, class, predictionstring")
    strange = pd.unique(truth["id"].astype(str)[~truth["id"].astype(str).isin(scores.ids)])
    if len(strange):
        raise InputError(f"truth has spans of document id(s) {format_rows(strange)} that the scores lack")
