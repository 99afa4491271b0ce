"""Chaii's evaluation metric: word-level Jaccard between predicted and true answers, overall and per group."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def jaccard(prediction: str, truth: str) -> float:
    """Jaccard of the two texts' word sets, exactly as Kaggle's chaii reference computes it.

    Words are lower-cased and split on any whitespace (str.split), and compared as sets, so repeats and word
    order do not count. The reference divides by zero when neither text has a word; every chaii truth has words,
    so that case only arises from bad data, and we return 0.0 there rather than crash or reward an empty answer.
    """
    a = set(prediction.lower().split())
    b = set(truth.lower().split())
    common = len(a & b)
    union = len(a) + len(b) - common
    return common / union if union else 0.0


def mean_jaccard(predictions: Sequence[str], truths: Sequence[str]) -> float:
    """Mean per-example Jaccard: the competition score of a whole prediction set."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions but {len(truths)} truths")
    if not len(truths):
        raise ValueError("no examples to score")
    return sum(jaccard(p, t) for p, t in zip(predictions, truths)) / len(truths)


def jaccard_report(
    frame: pd.DataFrame,
    group_col: str | None = None,
    *,
    prediction_col: str = "prediction",
    truth_col: str = "answer_text",
) -> pd.DataFrame:
    """Mean Jaccard with example counts: one 'all' row, then one row per value of group_col (fold, language...).

    Columns: [group_col or 'group', 'n', 'jaccard']. Missing texts (NaN, as read from an empty CSV cell) count as
    empty answers, so they score 0 instead of matching the word 'nan'.
    """
    needed = [c for c in (prediction_col, truth_col, group_col) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"jaccard_report: missing column(s) {missing}; have {list(frame.columns)}")
    scores = pd.Series(
        [jaccard(p, t) for p, t in zip(_texts(frame[prediction_col]), _texts(frame[truth_col]))],
        index=frame.index,
        dtype=float,
    )
    label = group_col or "group"
    rows = [{label: "all", "n": len(scores), "jaccard": scores.mean()}]
    if group_col is not None:
        for value, group in scores.groupby(frame[group_col], sort=True, dropna=False):
            rows.append({label: value, "n": len(group), "jaccard": group.mean()})
    return pd.DataFrame(rows, columns=[label, "n", "jaccard"])


def _texts(column: pd.Series) -> list[str]:
    """Column values as strings, NaN/None as ''."""
    return [str(v) for v in column.fillna("").tolist()]
