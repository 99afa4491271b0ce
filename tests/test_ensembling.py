import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from foldnlp.ensembling import average_char_scores
from foldnlp.tasks.qa.charscores import NO_SCORE, CharScores


def member(ids, starts, ends=None):
    """CharScores from per-example lists of start scores (ends default to the starts reversed per example)."""
    starts = [np.array(s, dtype=np.float32) for s in starts]
    ends = [np.array(e, dtype=np.float32) for e in ends] if ends else [s[::-1] for s in starts]
    return CharScores.from_lists(ids, starts, ends)


A = member(["q1", "q2"], [[-0.1, -2.5, NO_SCORE], [-1.0, -0.5]])


def test_average_of_identical_members_is_the_member():
    for members in ([A], [A, A], [A, A, A]):
        out = average_char_scores(members)
        assert out.ids.tolist() == ["q1", "q2"]
        np.testing.assert_array_equal(out.offsets, A.offsets)
        np.testing.assert_array_equal(out.start, A.start)
        np.testing.assert_array_equal(out.end, A.end)
        assert out.start.dtype == np.float16


def test_averages_probabilities_not_log_probabilities():
    b = member(["q1", "q2"], [[-2.0, -0.2, NO_SCORE], [NO_SCORE, -3.0]])
    out = average_char_scores([A, b])
    p = lambda *lps: np.log(np.mean(np.exp(np.array(lps, dtype=np.float64))))  # noqa: E731
    expected = [p(-0.1, -2.0), p(-2.5, -0.2), NO_SCORE, np.log(0.5 * np.exp(-1.0)), p(-0.5, -3.0)]
    np.testing.assert_allclose(out.start.astype(np.float64), expected, rtol=2e-3)
    assert out.start[3] == np.float16(-1.0 - np.log(2))  # one member's NO_SCORE adds probability 0
    assert out.start[2] == np.float16(NO_SCORE)  # uncovered by every member stays uncovered
    np.testing.assert_allclose(out.end[:3].astype(np.float64), expected[:3][::-1], rtol=2e-3)


def test_weights_are_normalised():
    b = member(["q1", "q2"], [[-3.0, -3.0, -3.0], [-3.0, -3.0]])
    out = average_char_scores([A, b], weights=[3.0, 1.0])
    assert float(out.start[0]) == pytest.approx(np.log(0.75 * np.exp(-0.1) + 0.25 * np.exp(-3.0)), rel=1e-3)
    only_b = average_char_scores([A, b], weights=[0.0, 2.0])
    np.testing.assert_array_equal(only_b.start, b.start)


@pytest.mark.parametrize(
    "weights, message",
    [([1.0], "1 weights for 2 members"), ([1.0, -1.0], "non-negative"), ([0.0, 0.0], "not all zero"),
     ([1.0, float("nan")], "finite")],
)
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        average_char_scores([A, A], weights=weights)


def test_members_are_aligned_by_id():
    reordered = member(["q2", "q1"], [[-1.0, -0.5], [-0.1, -2.5, NO_SCORE]])
    out = average_char_scores([A, reordered])
    assert out.ids.tolist() == ["q1", "q2"]
    np.testing.assert_array_equal(out.start, A.start)
    np.testing.assert_array_equal(out.end, A.end)
    flipped = average_char_scores([reordered, A])  # output follows the first member's order
    assert flipped.ids.tolist() == ["q2", "q1"]
    np.testing.assert_array_equal(flipped.start, reordered.start)


def test_mismatched_ids_raise_naming_them():
    other = member(["q1", "q3"], [[0.0, 0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"member 1: .*missing q2; extra q3"):
        average_char_scores([A, other])
    with pytest.raises(ValueError, match="missing q2; extra none"):
        average_char_scores([A, member(["q1"], [[0.0, 0.0, 0.0]])])
    with pytest.raises(ValueError, match="duplicate ids q1"):
        average_char_scores([A, member(["q1", "q1"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])])
    with pytest.raises(ValueError, match="no members"):
        average_char_scores([])


def test_different_context_lengths_raise_naming_the_id():
    longer = member(["q2", "q1"], [[-1.0, -0.5, -0.5], [-0.1, -2.5, NO_SCORE]])
    with pytest.raises(ValueError, match=r"q2 \(3 vs 2\)"):
        average_char_scores([A, longer])
