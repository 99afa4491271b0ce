"""Decode answer spans from per-character start/end log-probabilities (Scores per char) into context substrings.

Cost per example of L characters with C start candidates (about one per token): O(L + C log C) for the exact best
span (a sparse-table range maximum), plus O(L + k²) for the k × k grid of top start/end candidates that fills the
rest of an n-best list (n_best > 1). Never O(L²).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from foldnlp.scores import Scores
from foldnlp.tasks.qa.charscores import NO_SCORE

# Scores at or below this are NO_SCORE, also after ensembling shifted them by a log-weight (see ensembling.py).
_REAL_SCORE_FLOOR = NO_SCORE / 2
# is_space[c] tells whether code point c is whitespace to str.split(), so word counts agree with the metric;
# every such code point is below 0x3001, and the last slot stands for all code points above.
_IS_SPACE = np.array([chr(c).isspace() for c in range(0x3001)] + [False])


def decode_best_span(
    context: str,
    start: np.ndarray,
    end: np.ndarray,
    *,
    max_answer_chars: int | None = 100,
    max_answer_words: int | None = None,
    n_best: int = 20,
    top_k: int = 40,
) -> list[tuple[int, int, float]]:
    """Up to n_best spans (char_start, char_end_exclusive, start[s] + end[e]), best first.

    start, end: (len(context),) log-probabilities. A span starts at a start boundary (first character of a run of
    equal start scores, or of a word) and ends at an end boundary (last character of a run or of a word): each
    character carries its token's score, so only token edges are real choices. Spans never start or end on
    whitespace or on a NO_SCORE character, and obey e - s + 1 <= max_answer_chars and at most max_answer_words
    whitespace-separated words (None: no limit). The first span is exactly the best valid span; the others come
    from the top_k start × top_k end candidates, so they are exact only when top_k covers every candidate.
    """
    _check_settings(max_answer_chars, max_answer_words, n_best, top_k)
    start = np.asarray(start, dtype=np.float32)
    end = np.asarray(end, dtype=np.float32)
    if not len(start) == len(end) == len(context):
        raise ValueError(f"context has {len(context)} characters but scores have {len(start)}/{len(end)}")
    if not context:
        return []
    starts, ends, word_no = _candidates(context, start, end)
    lower = _start_lower_bounds(ends, word_no, max_answer_chars, max_answer_words)
    spans = _exact_best(start, end, starts, ends, lower)
    if n_best > 1 and spans:
        spans += _grid(start, end, starts, ends, word_no, max_answer_chars, max_answer_words, n_best, top_k)
    return _rank(spans, n_best)


def decode_all(contexts: Sequence[str], scores: Scores, **kw) -> list[str]:
    """Best answer text of each example (contexts in scores.ids order); '' where no span is valid. Not cleaned.

    kw go to decode_best_span; n_best defaults to 1 here since only the best span is kept.
    """
    if len(contexts) != len(scores):
        raise ValueError(f"{len(contexts)} contexts but {len(scores)} examples in the scores")
    kw.setdefault("n_best", 1)
    answers = []
    for i, context in enumerate(contexts):
        start, end = scores.example(i).T
        if len(context) != len(start):
            raise ValueError(
                f"example {str(scores.ids[i])!r}: context has {len(context)} characters"
                f" but scores cover {len(start)}"
            )
        spans = decode_best_span(context, start, end, **kw)
        answers.append(context[spans[0][0] : spans[0][1]] if spans else "")
    return answers


def _check_settings(max_chars: int | None, max_words: int | None, n_best: int, top_k: int) -> None:
    for name, value in (("max_answer_chars", max_chars), ("max_answer_words", max_words)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be None or >= 1, got {value}")
    if n_best < 1 or top_k < 1:
        raise ValueError(f"n_best and top_k must be >= 1, got {n_best}, {top_k}")


def _candidates(context: str, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start positions, end positions, word number of each character), positions ascending.

    word_no[i] counts the word starts at or before i, so context[s:e + 1] has word_no[e] - word_no[s] + 1 words
    when s and e are not whitespace.
    """
    code_points = np.frombuffer(context.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    space = _IS_SPACE[np.minimum(code_points, len(_IS_SPACE) - 1)]
    # np.r_ is ~4x slower than these shifted copies on short contexts, and this runs once per example.
    after_space = _shift_right(space, True)  # the text's first character counts as following a space
    before_space = _shift_left(space, True)
    start_changes = _shift_right(start, np.nan) != start  # NaN != anything: position 0 always starts a run
    end_changes = _shift_left(end, np.nan) != end
    is_start = ~space & (start > _REAL_SCORE_FLOOR) & (after_space | start_changes)
    is_end = ~space & (end > _REAL_SCORE_FLOOR) & (before_space | end_changes)
    word_no = np.cumsum(~space & after_space)
    return np.flatnonzero(is_start), np.flatnonzero(is_end), word_no


def _shift_right(values: np.ndarray, fill) -> np.ndarray:
    """values moved one place right: out[i] = values[i - 1], out[0] = fill."""
    out = np.empty_like(values)
    out[0], out[1:] = fill, values[:-1]
    return out


def _shift_left(values: np.ndarray, fill) -> np.ndarray:
    """values moved one place left: out[i] = values[i + 1], out[-1] = fill."""
    out = np.empty_like(values)
    out[-1], out[:-1] = fill, values[1:]
    return out


def _start_lower_bounds(
    ends: np.ndarray, word_no: np.ndarray, max_chars: int | None, max_words: int | None
) -> np.ndarray:
    """For each end position e, the smallest start s the length limits allow; valid starts are [lower, e]."""
    lower = np.zeros(len(ends), dtype=np.int64)
    if max_chars is not None:
        lower = np.maximum(lower, ends - max_chars + 1)
    if max_words is not None:
        # The first character whose word number is within max_words of e's (word_no never decreases).
        lower = np.maximum(lower, np.searchsorted(word_no, word_no[ends] - max_words + 1, side="left"))
    return lower


def _exact_best(start, end, starts, ends, lower) -> list[tuple[int, int, float]]:
    """The single best valid span, as [(s, e + 1, score)], or [] if none: for each end, the best start in range."""
    if not len(starts) or not len(ends):
        return []
    # The starts allowed for ends[q] are the candidates starts[first[q]:last[q] + 1] (starts is ascending).
    first = np.searchsorted(starts, lower, side="left")
    last = np.searchsorted(starts, ends, side="right") - 1
    some = first <= last
    best_start = np.full(len(ends), -np.inf, dtype=np.float32)
    best_start[some] = _range_max(start[starts], first[some], last[some])
    totals = best_start + end[ends]
    q = int(np.argmax(totals))
    if not np.isfinite(totals[q]):
        return []
    s = starts[first[q] + int(np.argmax(start[starts[first[q] : last[q] + 1]]))]
    return [(int(s), int(ends[q]) + 1, float(totals[q]))]


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo[q]:hi[q] + 1]) for every query q; requires lo <= hi.

    Sparse table: table[j, i] is the max of values[i:i + 2**j], built in O(C log C) for C values; a query covers
    its range with two overlapping power-of-two blocks in O(1).
    """
    n = len(values)
    table = np.full((max(1, n.bit_length()), n), -np.inf, dtype=np.float32)
    table[0] = values
    for j in range(1, len(table)):
        half, width = 1 << (j - 1), n - (1 << j) + 1  # width: how many blocks of 2**j fit
        np.maximum(table[j - 1, :width], table[j - 1, half : half + width], out=table[j, :width])
    j = np.frexp((hi - lo + 1).astype(np.float64))[1] - 1  # floor(log2(range length)), exact
    return np.maximum(table[j, lo], table[j, hi - (1 << j) + 1])


def _grid(start, end, starts, ends, word_no, max_chars, max_words, n_best, top_k) -> list[tuple[int, int, float]]:
    """The n_best valid spans among the top_k start × top_k end candidates (k × k score matrix)."""
    s = _top(starts, start, top_k)[:, None]
    e = _top(ends, end, top_k)[None, :]
    valid = s <= e
    if max_chars is not None:
        valid &= e - s + 1 <= max_chars
    if max_words is not None:
        valid &= word_no[e] - word_no[s] + 1 <= max_words
    totals = np.where(valid, start[s] + end[e], -np.inf)
    flat = totals.ravel()
    keep = min(n_best, flat.size)
    best = np.argpartition(-flat, keep - 1)[:keep]
    best = best[np.isfinite(flat[best])]
    rows, cols = np.unravel_index(best, totals.shape)
    return [(int(s[r, 0]), int(e[0, c]) + 1, float(totals[r, c])) for r, c in zip(rows, cols)]


def _top(positions: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The (at most) k positions with the highest scores, in no particular order."""
    if len(positions) <= k:
        return positions
    return positions[np.argpartition(-scores[positions], k - 1)[:k]]


def _rank(spans: list[tuple[int, int, float]], n_best: int) -> list[tuple[int, int, float]]:
    """Distinct spans, best score first, then by position; at most n_best."""
    return sorted(set(spans), key=lambda span: (-span[2], span[0], span[1]))[:n_best]
