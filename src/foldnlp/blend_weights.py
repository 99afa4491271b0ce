"""Blend weights by greedy forward selection with replacement (Caruana, Niculescu-Mizil, Crew & Ksikes, "Ensemble
selection from libraries of models", ICML 2004): the Kaggle standard for weighting ensemble members.

Hand-written rather than scipy.optimize: the competition metrics a blend is judged by (word Jaccard, overlap-F1,
QWK, accuracy) are step functions of the weights, flat almost everywhere, so gradient or simplex optimisers
(SLSQP, Nelder-Mead) stall at their start. Greedy selection needs only the metric's value: it keeps a bag of
members, adds, with replacement, the member whose addition scores best, and stops when no addition improves the
score. A member's weight is its share of the bag, so weights are non-negative, sum to 1 and stay coarse (multiples
of 1 / bag size), which overfits the out-of-fold rows less than free weights.

Two bags are grown: one from the best member alone and one from every member once (the equal-weight blend); the
better result is returned, so it is never worse than the best member nor than equal weights on the rows scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_ROUNDS = 25  # additions to a bag at most: enough for 2-5 members, each addition costs n_members scorings


@dataclass(frozen=True)
class Selection:
    weights: np.ndarray  # (n_members,) float64, non-negative, summing to 1
    score: float  # score(weights)
    counts: np.ndarray  # (n_members,) int64: how often each member is in the bag


def greedy_weights(score: Callable[[np.ndarray], float], n_members: int, *, higher_is_better: bool = True,
                   max_rounds: int = DEFAULT_ROUNDS) -> Selection:
    """The weights that greedy forward selection with replacement finds for score (weights (n_members,) summing
    to 1 → the blend's metric); ties go to the lower member index, and to the bag grown from the best member."""
    if n_members < 1 or max_rounds < 1:
        raise ValueError(f"need at least one member and one round, got {n_members} members, {max_rounds} rounds")
    sign = 1.0 if higher_is_better else -1.0
    from_best = _grow(score, np.zeros(n_members, dtype=np.int64), None, sign, max_rounds)
    if n_members == 1:
        return from_best
    everyone = np.ones(n_members, dtype=np.int64)
    from_all = _grow(score, everyone, score(everyone / n_members), sign, max_rounds)
    return from_all if sign * from_all.score > sign * from_best.score else from_best


def _grow(score, counts: np.ndarray, current: float | None, sign: float, max_rounds: int) -> Selection:
    """Add the best member to the bag while that improves its score (the first addition is always made to an empty
    bag), at most max_rounds times."""
    counts = counts.copy()
    for _ in range(max_rounds):
        trials = []
        for i in range(len(counts)):
            trial = counts.copy()
            trial[i] += 1
            trials.append(score(trial / trial.sum()))
        signed = sign * np.asarray(trials, dtype=np.float64)
        best = int(np.argmax(np.where(np.isnan(signed), -np.inf, signed)))  # a NaN score (no class in a fold) loses
        if current is not None and not sign * trials[best] > sign * current:
            break
        counts[best] += 1
        current = trials[best]
    return Selection(counts / counts.sum(), float(current), counts)
