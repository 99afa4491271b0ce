"""Greedy forward selection with replacement (blend_weights): weights are shares of a bag of members, start from
the best member, never end below the best member nor below equal weights, and follow the metric's direction."""

import numpy as np
import pytest

from foldnlp.blend_weights import greedy_weights


def test_the_bag_grows_towards_the_best_mix_in_coarse_steps():
    target = np.array([0.7, 0.3, 0.0])

    def score(w):
        return -float(((w - target) ** 2).sum())

    chosen = greedy_weights(score, 3)  # [1, 0, 0] → [1, 1, 0] → [2, 1, 0]; [3, 1, 0] would be worse
    assert chosen.counts.tolist() == [2, 1, 0] and chosen.weights == pytest.approx([2 / 3, 1 / 3, 0])
    assert chosen.weights.sum() == pytest.approx(1.0) and (chosen.weights >= 0).all()
    assert chosen.score == pytest.approx(score(np.array([2 / 3, 1 / 3, 0])))


def test_one_member_gets_all_the_weight_and_a_useless_member_none():
    assert greedy_weights(lambda w: 1.0, 1).weights.tolist() == [1.0]
    calls = []

    def score(w):  # member 1 alone is best; any share of the others hurts
        calls.append(tuple(w))
        return float(w[1])

    chosen = greedy_weights(score, 3)
    assert chosen.weights.tolist() == [0.0, 1.0, 0.0] and chosen.score == 1.0
    assert calls[:3] == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]  # the first round: each member alone


def test_equal_weights_win_when_no_single_member_path_reaches_them():
    """A metric flat except at the equal mix (a step function, as Jaccard is): greedy growth from the best member
    stops at once, so the bag that starts with every member decides."""

    def score(w):
        return 1.0 if np.allclose(w, 1 / 3) else (0.5 if w[0] == 1 else 0.4)

    chosen = greedy_weights(score, 3)
    assert chosen.weights == pytest.approx([1 / 3] * 3) and chosen.score == 1.0


def test_lower_is_better_metrics_are_minimised_and_rounds_are_capped():
    def rmse_like(w):
        return float((w[0] - 2 / 3) ** 2)  # best at a 2/3 share of member 0

    chosen = greedy_weights(rmse_like, 2, higher_is_better=False)
    assert chosen.counts.tolist() == [2, 1] and chosen.score == pytest.approx(0.0)
    # Every addition of member 0 to a mix improves, member 0 alone scores 0: the bag stops after 3 additions.
    capped = greedy_weights(lambda w: float(w[0]) if w[0] < 1 else 0.0, 2, max_rounds=3)
    assert capped.counts.tolist() == [4, 1]  # grown from [1, 1]; the bag from member 0 reached [2, 1] only
    with pytest.raises(ValueError, match="at least one member"):
        greedy_weights(rmse_like, 0)


def test_a_nan_score_never_wins():
    chosen = greedy_weights(lambda w: float("nan") if w[0] > 0 else float(w[1]), 2)
    assert chosen.weights.tolist() == [0.0, 1.0]
