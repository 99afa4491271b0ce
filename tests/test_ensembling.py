import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from foldnlp.ensembling import average_scores
from foldnlp.scores import VALUE, Scores
from foldnlp.tasks.qa.charscores import NO_SCORE, char_scores


def member(ids, starts, ends=None):
    """Scores per char from per-example lists of start scores (ends default to the starts reversed per example)."""
    starts = [np.array(s, dtype=np.float32) for s in starts]
    ends = [np.array(e, dtype=np.float32) for e in ends] if ends else [s[::-1] for s in starts]
    return char_scores(ids, starts, ends)


A = member(["q1", "q2"], [[-0.1, -2.5, NO_SCORE], [-1.0, -0.5]])


def test_average_of_identical_members_is_the_member():
    for members in ([A], [A, A], [A, A, A]):
        out = average_scores(members)
        assert out.ids.tolist() == ["q1", "q2"]
        np.testing.assert_array_equal(out.offsets, A.offsets)
        np.testing.assert_array_equal(out.values[:, 0], A.values[:, 0])
        np.testing.assert_array_equal(out.values[:, 1], A.values[:, 1])
        assert out.values[:, 0].dtype == np.float16


def test_averages_probabilities_not_log_probabilities():
    b = member(["q1", "q2"], [[-2.0, -0.2, NO_SCORE], [NO_SCORE, -3.0]])
    out = average_scores([A, b])
    p = lambda *lps: np.log(np.mean(np.exp(np.array(lps, dtype=np.float64))))  # noqa: E731
    expected = [p(-0.1, -2.0), p(-2.5, -0.2), NO_SCORE, np.log(0.5 * np.exp(-1.0)), p(-0.5, -3.0)]
    np.testing.assert_allclose(out.values[:, 0].astype(np.float64), expected, rtol=2e-3)
    assert out.values[:, 0][3] == np.float16(-1.0 - np.log(2))  # one member's NO_SCORE adds probability 0
    assert out.values[:, 0][2] == np.float16(NO_SCORE)  # uncovered by every member stays uncovered
    np.testing.assert_allclose(out.values[:, 1][:3].astype(np.float64), expected[:3][::-1], rtol=2e-3)


def test_weights_are_normalised():
    b = member(["q1", "q2"], [[-3.0, -3.0, -3.0], [-3.0, -3.0]])
    out = average_scores([A, b], weights=[3.0, 1.0])
    assert float(out.values[:, 0][0]) == pytest.approx(np.log(0.75 * np.exp(-0.1) + 0.25 * np.exp(-3.0)), rel=1e-3)
    only_b = average_scores([A, b], weights=[0.0, 2.0])
    np.testing.assert_array_equal(only_b.values[:, 0], b.values[:, 0])


@pytest.mark.parametrize(
    "weights, message",
    [([1.0], "1 weights for 2 members"), ([1.0, -1.0], "non-negative"), ([0.0, 0.0], "not all zero"),
     ([1.0, float("nan")], "finite")],
)
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        average_scores([A, A], weights=weights)


def test_members_are_aligned_by_id():
    reordered = member(["q2", "q1"], [[-1.0, -0.5], [-0.1, -2.5, NO_SCORE]])
    out = average_scores([A, reordered])
    assert out.ids.tolist() == ["q1", "q2"]
    np.testing.assert_array_equal(out.values[:, 0], A.values[:, 0])
    np.testing.assert_array_equal(out.values[:, 1], A.values[:, 1])
    flipped = average_scores([reordered, A])  # output follows the first member's order
    assert flipped.ids.tolist() == ["q2", "q1"]
    np.testing.assert_array_equal(flipped.values[:, 0], reordered.values[:, 0])


def test_mismatched_ids_raise_naming_them():
    other = member(["q1", "q3"], [[0.0, 0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"member 1: .*missing q2; extra q3"):
        average_scores([A, other])
    with pytest.raises(ValueError, match="missing q2; extra none"):
        average_scores([A, member(["q1"], [[0.0, 0.0, 0.0]])])
    with pytest.raises(ValueError, match="duplicate ids q1"):
        average_scores([A, member(["q1", "q1"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])])
    with pytest.raises(ValueError, match="no members"):
        average_scores([])


def test_different_context_lengths_raise_naming_the_id():
    longer = member(["q2", "q1"], [[-1.0, -0.5, -0.5], [-0.1, -2.5, NO_SCORE]])
    with pytest.raises(ValueError, match=r"q2 \(3 vs 2\)"):
        average_scores([A, longer])


def test_members_scoring_another_unit_or_channels_are_refused():
    words = Scores(A.ids, A.offsets, A.values, "word", ("O", "B-Claim"))
    with pytest.raises(ValueError, match=r"member 1 has logprob scores per word × \('O', 'B-Claim'\)"):
        average_scores([A, words])


def test_regression_predictions_blend_by_their_weighted_mean():
    one = Scores.from_lists(["a", "b"], [np.array([[1.0, 10.0]]), np.array([[2.0, 20.0]])], "example", ("x", "y"),
                            VALUE)
    two = Scores.from_lists(["b", "a"], [np.array([[4.0, 40.0]]), np.array([[3.0, 30.0]])], "example", ("x", "y"),
                            VALUE)
    blended = average_scores([one, two], [1.0, 3.0])
    assert blended.kind == VALUE and blended.values.dtype == np.float32
    np.testing.assert_allclose(blended.values, [[2.5, 25.0], [3.5, 35.0]])  # (1 + 3·3) / 4, (2 + 3·4) / 4


def test_log_probabilities_and_predictions_do_not_blend():
    values = Scores.from_lists(["a"], [np.zeros((1, 2))], "example", ("x", "y"), VALUE)
    logprobs = Scores.from_lists(["a"], [np.zeros((1, 2))], "example", ("x", "y"))
    with pytest.raises(ValueError, match="member 1 has logprob scores"):
        average_scores([values, logprobs])
