"""Ensemble members (folds, experiments) of any task by a weighted average: of their scores' probabilities, or of
their predictions for regression scores (kind VALUE)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from foldnlp.errors import format_rows
from foldnlp.scores import VALUE, Scores


def average_scores(members: Sequence[Scores], weights: Sequence[float] | None = None) -> Scores:
    """log(Σ_i w_i · exp(s_i)) per row and channel, with weights normalised to sum to 1; for VALUE scores
    (regression predictions) Σ_i w_i · s_i.

    Probabilities are averaged, not log-probabilities: a member that is sure (log-prob near 0) is not drowned by
    one that gives the row nothing, and a row a member did not score (QA's NO_SCORE = -1e4: exp(-1e4) = 0) simply
    adds nothing. Computed as a running logaddexp in float32 (no overflow or underflow, memory of one member),
    stored as float16. Examples come out in members[0]'s id order; every member must hold the same ids with the
    same row counts, units and channels (ValueError naming them otherwise).
    """
    if not members:
        raise ValueError("no members to average")
    weights = _normalised_weights(weights, len(members))
    reference = members[0]
    lengths = reference.lengths
    is_value = reference.kind == VALUE
    total = np.full(reference.values.shape, 0.0 if is_value else -np.inf, dtype=np.float64 if is_value else np.float32)
    for number, (member, weight) in enumerate(zip(members, weights)):
        if (member.unit, member.channels, member.kind) != (reference.unit, reference.channels, reference.kind):
            raise ValueError(f"member {number} has {member.kind} scores per {member.unit} × {member.channels}, "
                             f"member 0 {reference.kind} scores per {reference.unit} × {reference.channels}")
        positions = _aligned_positions(reference, member, lengths, number)
        if weight == 0:  # checked, but contributes nothing (and log(0) = -inf would need care)
            continue
        if is_value:
            total += weight * member.values[positions].astype(np.float64)
        else:
            log_weight = np.float32(np.log(weight))
            np.logaddexp(total, member.values[positions].astype(np.float32) + log_weight, out=total)
    return Scores(reference.ids.copy(), reference.offsets.copy(), total.astype(reference.values.dtype),
                  reference.unit, reference.channels, reference.kind)


def _normalised_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    """(count,) float64 weights summing to 1; uniform when weights is None."""
    if weights is None:
        return np.full(count, 1.0 / count)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (count,):
        raise ValueError(f"{w.size} weights for {count} members")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


def _aligned_positions(reference: Scores, member: Scores, lengths: np.ndarray, number: int) -> np.ndarray:
    """Row positions into member's values that list its rows in reference's example order.

    lengths: (n,) row count of each reference example. Raises ValueError for duplicate, missing or extra ids, or
    an example whose row count differs (then the texts differ and scores cannot be aligned).
    """
    order = _member_order(reference.ids, member.ids, number)
    member_lengths = np.diff(member.offsets)[order]
    bad = np.flatnonzero(member_lengths != lengths)
    if bad.size:
        raise ValueError(
            f"member {number}: {reference.unit} counts differ from member 0 (different texts?) for ids "
            f"{format_rows(f'{reference.ids[i]} ({member_lengths[i]} vs {lengths[i]})' for i in bad)}"
        )
    # Reference example i occupies rows offsets[i] + t (t < lengths[i]) and maps to member_start + t.
    shift = np.repeat(member.offsets[:-1][order] - reference.offsets[:-1], lengths)
    return shift + np.arange(len(shift))


def _member_order(reference_ids: np.ndarray, member_ids: np.ndarray, number: int) -> np.ndarray:
    """(n,) index into member_ids of each reference id, in reference order (member 0 is the reference itself)."""
    counts = Counter(member_ids.tolist())
    if len(counts) != len(member_ids):
        raise ValueError(f"member {number}: duplicate ids {format_rows(sorted(i for i, c in counts.items() if c > 1))}")
    if np.array_equal(reference_ids, member_ids):
        return np.arange(len(member_ids))
    missing, extra = set(reference_ids) - set(member_ids), set(member_ids) - set(reference_ids)
    if missing or extra:
        raise ValueError(
            f"member {number}: ids differ from member 0: missing {format_rows(sorted(missing)) or 'none'}; "
            f"extra {format_rows(sorted(extra)) or 'none'}"
        )
    position = {id_: i for i, id_ in enumerate(member_ids)}
    return np.array([position[id_] for id_ in reference_ids], dtype=np.int64)
