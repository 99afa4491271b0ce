"""Blend weights of experiments fit on their out-of-fold scores (ensemble.py --fit-weights), with the honest
estimate: each fold blended with weights fit on the other folds' rows only.

A weight vector is scored as the blend is judged: the members' out-of-fold scores averaged with those weights
(ensembling.average_scores), decoded and scored by the task's metric (Task.metric); blend_weights.greedy_weights
searches the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foldnlp.blend_weights import greedy_weights
from foldnlp.ensembling import average_scores
from foldnlp.scores import Scores, concat_scores


@dataclass(frozen=True)
class WeightFit:
    weights: list[float]  # per member, summing to 1: the weights of the out-of-fold and the test blend
    value: float  # the metric of the out-of-fold blend with them (fit and scored on the same rows)
    report: str  # printable: each member alone, equal weights, fitted weights, and the per-fold honest estimate
    record: dict  # what ensemble.py writes to <out>.weights.json


def fit_weights(task, examples: pd.DataFrame, folds: pd.Series, labels: list[str], members: list[Scores], *,
                max_rounds: int) -> WeightFit:
    """Weights for members (each one's out-of-fold scores, labelled by labels) that maximise the task's metric of
    their blend (minimise, for a lower-is-better metric); folds: the fold of each id (index id)."""
    n = len(members)
    score = _scorer(task, examples, members)
    alone = [score(np.eye(n)[i]) for i in range(n)]
    equal = score(np.full(n, 1.0 / n))
    chosen = greedy_weights(score, n, higher_is_better=task.higher_is_better, max_rounds=max_rounds)
    weights = chosen.weights.tolist()
    sign = 1 if task.higher_is_better else -1
    best = max(range(n), key=lambda i: sign * alone[i])
    width = max(len(label) for label in [*labels, "fitted weights"])
    lines = [f"blend weights fit on the out-of-fold outputs (greedy forward selection with replacement, at most "
             f"{max_rounds} additions) by {task.metric_name} on the same {len(members[0])} ids "
             f"({'higher' if task.higher_is_better else 'lower'} is better):"]
    lines += [f"  {label:<{width}}  {value:.4f}  alone" for label, value in zip(labels, alone)]
    lines.append(f"  {'equal weights':<{width}}  {equal:.4f}")
    lines.append(f"  {'fitted weights':<{width}}  {chosen.score:.4f}  ({_versus(chosen.score, equal, sign)} equal "
                 f"weights, {_versus(chosen.score, alone[best], sign)} the best member, {labels[best]}; fit and "
                 f"scored on the same rows): " + ", ".join(f"{label} {w:.4f}" for label, w in zip(labels, weights)))
    honest_lines, per_fold, honest = _fit_on_other_folds(task, examples, folds, members, max_rounds)
    lines += honest_lines
    if honest is not None:
        lines.append(f"  all folds: equal weights {equal:.4f}, weights fit on the other folds {honest:.4f} (the honest "
                     f"estimate: {_versus(honest, equal, sign)} equal weights)")
    record = {"metric": task.metric_name, "higher_is_better": task.higher_is_better,
              "members": [{"spec": label, "weight": w} for label, w in zip(labels, weights)],
              "cv": {"members": dict(zip(labels, alone)), "equal_weights": equal, "fitted_weights": chosen.score,
                     "weights_fit_on_other_folds": honest},
              "per_fold": per_fold}
    return WeightFit(weights, chosen.score, "\n".join(lines), record)


def _fit_on_other_folds(task, examples: pd.DataFrame, folds: pd.Series, members: list[Scores],
                        max_rounds: int) -> tuple[list[str], dict, float | None]:
    """(report lines, per-fold record, overall metric) of the honest estimate: fold k's rows blended with weights
    fit on the rows of the other folds; the overall metric is of every fold's rows so blended, together."""
    ids = members[0].ids.tolist()
    fold_of = pd.Series(ids).map(folds).to_numpy()
    fold_numbers = sorted({int(k) for k in fold_of})
    if len(fold_numbers) < 2:
        return [f"honest estimate: not made, the out-of-fold rows hold one fold only ({fold_numbers})"], {}, None
    n, sign = len(members), 1 if task.higher_is_better else -1
    lines = ["honest estimate, each fold blended with weights fit on the other folds' rows:"]
    per_fold, blends = {}, []
    for k in fold_numbers:
        held = [i for i, f in zip(ids, fold_of) if f == k]
        rest = [i for i, f in zip(ids, fold_of) if f != k]
        chosen = greedy_weights(_scorer(task, examples, [m.select(rest) for m in members]), n,
                                higher_is_better=task.higher_is_better, max_rounds=max_rounds)
        held_members = [m.select(held) for m in members]
        blend = average_scores(held_members, chosen.weights)
        blends.append(blend)
        equal, fitted = task.metric(examples, average_scores(held_members)), task.metric(examples, blend)
        per_fold[str(k)] = {"weights": chosen.weights.tolist(), "equal_weights": equal,
                            "weights_fit_on_other_folds": fitted}
        lines.append(f"  fold {k} (n={len(held)}): equal weights {equal:.4f}, weights fit on the other folds "
                     f"{fitted:.4f} ({_versus(fitted, equal, sign)} equal weights; weights "
                     + " ".join(f"{w:.4f}" for w in chosen.weights) + ")")
    return lines, per_fold, task.metric(examples, concat_scores(blends))


def _versus(value: float, other: float, sign: int) -> str:
    """'0.0146 better than', '0.0012 worse than' or 'the same as' (sign: 1 when higher is better, else -1)."""
    if value == other:
        return "the same as"
    return f"{abs(value - other):.4f} {'better' if sign * (value - other) > 0 else 'worse'} than"


def _scorer(task, examples: pd.DataFrame, members: list[Scores]) -> Callable[[np.ndarray], float]:
    """weights → the metric of the members' blend with them; each weight vector is decoded once (greedy search
    asks again for the bags it has scored)."""
    seen: dict[tuple, float] = {}

    def score(weights: np.ndarray) -> float:
        key = tuple(np.round(np.asarray(weights, dtype=np.float64), 12))
        if key not in seen:
            seen[key] = task.metric(examples, average_scores(members, weights))
        return seen[key]

    return score
