"""The Feedback Prize 2021 metric: F1 of predicted spans against true spans, matched by word overlap.

A *span table* is a DataFrame with one row per span and the columns `id` (document id, str), `class` (str) and
`predictionstring` (the span's word indices, space-separated, e.g. "3 4 5 6"; the words of an essay are its
whitespace-separated tokens numbered from 0), as in the competition's files; other columns are ignored. A
predictionstring is read as a set of words: their order and repeats do not matter.

Matching, per (id, class): a prediction P and a true span G *qualify* when |P∩G| / |G| >= 0.5 and |P∩G| / |P| >= 0.5.
Each true span and each prediction is matched at most once: qualifying pairs are taken greedily, best first, by
  1. the larger of the two overlaps, highest first (the key of the competition's reference code, below),
  2. then the smaller of the two, highest first,
  3. then the true span's row, then the prediction's row (earliest first), so that the result is deterministic;
a pair is taken when neither of its spans is taken yet. TP = matched pairs, FP = unmatched predictions, FN =
unmatched true spans, F1 of a class = TP / (TP + (FP + FN) / 2).

The reference code that competitors scored with, Rob Mulla's public implementation of the evaluation page's rule ("if
multiple matches exist, the match with the highest pair of overlaps is taken"), at
https://www.kaggle.com/robikscube/student-writing-competition-twitch, keeps, per true span, its qualifying
prediction of largest max(|P∩G|/|G|, |P∩G|/|P|), and lets one prediction match several true spans. The counts differ
only where a prediction qualifies for two true spans, which for disjoint true spans means it is split exactly in half
between them: the reference code counts two TPs there, this metric one TP and one FN.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from foldnlp.errors import InputError, format_rows

COLUMNS = ("id", "class", "predictionstring")
# Word indices are at most this (an essay of two billion words is a broken file); keeps the join keys in int64.
_MAX_WORD = 2**31 - 1


def word_sets(predictionstrings) -> list[set[int]]:
    """The set of word indices of each predictionstring ("3 4 5" -> {3, 4, 5}), in order. InputError naming the
    positions of entries that are missing, empty, or hold anything but non-negative integers."""
    strings = list(predictionstrings)
    row, words = _parse(strings, range(len(strings)), "predictionstrings")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=len(strings)))])
    return [set(words[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])]


def overlap_f1(truth: pd.DataFrame, predictions: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """(macro F1, {class: F1}) of the predictions' spans against the true ones (both span tables), matched as the
    module docstring says.

    The classes are those of the truth, sorted by name; the macro F1 is the unweighted mean of their F1s, so a rare
    class counts as much as a common one, and a class with true spans but no prediction scores 0 and counts.
    Predictions of a class absent from the truth are ignored (neither FP of any class nor in the macro), as in the
    competition, where every class occurs in the truth. Documents are matched by `id` only: a prediction for an id
    without true spans is an FP of its class. InputError when the truth has no spans.
    """
    classes, f1 = subset_f1(truth, predictions, None)
    per_class = {c: float(v) for c, v in zip(classes, f1[0])}
    return float(np.mean(f1[0])), per_class


def subset_f1(truth: pd.DataFrame, predictions: pd.DataFrame, keep: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    """Per-class overlap F1 of many subsets of one prediction table at once, sharing the overlap computation (fitting
    decoding rules scores each rule's subset of the spans decoded with the loosest rule).

    keep: (S, len(predictions)) bool, row s the predictions of subset s; None is one subset of them all.
    Returns (classes, f1): the truth's classes sorted by name, and (S, len(classes)) float64, row s what
    overlap_f1(truth, predictions[keep[s]]) gives per class.
    """
    gt, pred = _table(truth, "truth"), _table(predictions, "predictions")
    if not len(gt):
        raise InputError("truth has no spans to score")
    keep = np.ones((1, len(pred)), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep.ndim != 2 or keep.shape[1] != len(pred):
        raise ValueError(f"keep must be (subsets, {len(pred)}) for {len(pred)} predictions; got {keep.shape}")
    classes = sorted(gt["class"].unique())
    code = {c: k for k, c in enumerate(classes)}
    gt_class = gt["class"].map(code).to_numpy(np.int64)
    pred_class = pred["class"].map(code).fillna(-1).to_numpy(np.int64)  # -1: a class the truth lacks
    n_gt = np.bincount(gt_class, minlength=len(classes))
    scored = pred_class >= 0
    one_hot = np.zeros((len(pred), len(classes)))
    one_hot[np.flatnonzero(scored), pred_class[scored]] = 1
    n_pred = keep.astype(np.float64) @ one_hot  # (S, K) predictions of each class kept in each subset
    gt_row, pred_row = qualifying_pairs(truth, predictions)
    tp = np.zeros((len(keep), len(classes)))
    for s, kept in enumerate(keep):
        sel = kept[pred_row]
        taken = match_pairs(gt_row[sel], pred_row[sel], len(gt), len(pred))
        tp[s] = np.bincount(gt_class[gt_row[sel][taken]], minlength=len(classes))
    return classes, 2 * tp / (n_gt + n_pred)  # TP / (TP + (FP + FN) / 2), FP = n_pred - TP, FN = n_gt - TP


def qualifying_pairs(truth: pd.DataFrame, predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(truth rows, prediction rows), (m,) int64 positions in the two span tables, of the m pairs of one id and
    class whose overlaps are both >= 0.5, best first in the matching order of the module docstring."""
    gt, pred = _table(truth, "truth"), _table(predictions, "predictions")
    gt_span, gt_word = _parse(gt["predictionstring"].tolist(), truth.index, "truth column predictionstring")
    pred_span, pred_word = _parse(pred["predictionstring"].tolist(), predictions.index,
                                    "predictions column predictionstring")
    gt_size = np.bincount(gt_span, minlength=len(gt))
    pred_size = np.bincount(pred_span, minlength=len(pred))
    # One integer per (id, class, word), the same in both tables, to join on.
    group = pd.concat([gt[["id", "class"]], pred[["id", "class"]]], ignore_index=True) \
        .groupby(["id", "class"], sort=False).ngroup().to_numpy(np.int64)
    stride = int(max(gt_word.max(initial=0), pred_word.max(initial=0))) + 1
    gt_key = group[: len(gt)][gt_span] * stride + gt_word
    pred_key = group[len(gt):][pred_span] * stride + pred_word
    joined = pd.DataFrame({"key": gt_key, "gt": gt_span}).merge(pd.DataFrame({"key": pred_key, "pred": pred_span}),
                                                               on="key")
    pair, inter = np.unique(joined["gt"].to_numpy(np.int64) * len(pred) + joined["pred"].to_numpy(np.int64),
                            return_counts=True)
    gt_row, pred_row = pair // max(len(pred), 1), pair % max(len(pred), 1)
    # Exact at 0.5: compare integers, not quotients.
    ok = (2 * inter >= gt_size[gt_row]) & (2 * inter >= pred_size[pred_row])
    gt_row, pred_row, inter = gt_row[ok], pred_row[ok], inter[ok]
    of_gt, of_pred = inter / gt_size[gt_row], inter / pred_size[pred_row]
    order = np.lexsort((pred_row, gt_row, -np.minimum(of_gt, of_pred), -np.maximum(of_gt, of_pred)))
    return gt_row[order], pred_row[order]


def match_pairs(gt_row: np.ndarray, pred_row: np.ndarray, n_gt: int, n_pred: int) -> np.ndarray:
    """(m,) bool: which of the m candidate pairs, given best first, the greedy one-to-one matching takes.

    Vectorised by rounds: a pair that comes first among the live pairs of both its true span and its prediction is
    taken (the best live pair always is, so each round takes one at least), and the pairs of spans taken die. This
    takes exactly the pairs that going down the list one by one would.
    """
    taken = np.zeros(len(gt_row), dtype=bool)
    live = np.ones(len(gt_row), dtype=bool)
    while live.any():
        idx = np.flatnonzero(live)
        first_of_gt = np.zeros(len(idx), dtype=bool)
        first_of_gt[np.unique(gt_row[idx], return_index=True)[1]] = True
        first_of_pred = np.zeros(len(idx), dtype=bool)
        first_of_pred[np.unique(pred_row[idx], return_index=True)[1]] = True
        won = idx[first_of_gt & first_of_pred]
        taken[won] = True
        gt_done, pred_done = np.zeros(n_gt, dtype=bool), np.zeros(n_pred, dtype=bool)
        gt_done[gt_row[won]], pred_done[pred_row[won]] = True, True
        live &= ~gt_done[gt_row] & ~pred_done[pred_row]
    return taken


def _table(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The span table's three columns, id and class as str, positions 0..n-1; InputError naming missing columns or
    the rows (index labels) without an id or class."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {', '.join(missing)}; a span table has columns {', '.join(COLUMNS)}")
    for column in ("id", "class"):
        blank = frame.index[frame[column].isna().to_numpy()]
        if len(blank):
            raise InputError(f"{name} column {column} is missing in row(s) {format_rows(blank)}")
    table = frame[list(COLUMNS)].reset_index(drop=True)
    return table.assign(id=table["id"].astype(str), **{"class": table["class"].astype(str)})


def _parse(strings: list, labels, subject: str) -> tuple[np.ndarray, np.ndarray]:
    """(span, word): (m,) int64 arrays, the distinct words of each string with its position, spans in order and words
    ascending within one. labels: what the rows are called in messages (index labels or positions); subject: what
    the strings are, in messages."""
    bad = [i for i, s in enumerate(strings) if not isinstance(s, str) or not s.strip()]
    tokens = [s.split() if isinstance(s, str) else [] for s in strings]
    flat = list(itertools.chain.from_iterable(tokens))
    try:
        words = np.array(flat, dtype=np.int64)
    except (ValueError, OverflowError):
        words = None
    if words is None or (len(words) and (words.min() < 0 or words.max() > _MAX_WORD)) or bad:
        bad = sorted(set(bad) | {i for i, t in enumerate(tokens) if not all(w.isascii() and w.isdigit()
                                                                            and int(w) <= _MAX_WORD for w in t)})
        shown = [labels[i] for i in bad]
        raise InputError(f"{subject} must list word indices (non-negative integers, "
                         f"space-separated); not so in row(s) {format_rows(shown)}")
    span = np.repeat(np.arange(len(strings), dtype=np.int64), [len(t) for t in tokens])
    same = span[1:] == span[:-1]
    if (np.diff(words)[same] <= 0).any():  # unsorted or repeated words: sort and drop repeats
        key = np.unique(span * (_MAX_WORD + 1) + words)
        span, words = key // (_MAX_WORD + 1), key % (_MAX_WORD + 1)
    return span, words
