"""QA: token logits → character scores (Scores per char, channels start and end)."""

import numpy as np

from foldnlp.tasks.qa.charscores import NO_SCORE, char_scores, example_char_scores, window_logits_to_char_scores
from foldnlp.tasks.qa.decoding import decode_best_span


def test_each_char_takes_its_tokens_log_probability():
    offsets = np.array([[0, 3], [3, 5], [6, 9]])  # char 5 (a space) belongs to no token
    logits = np.array([1.0, 2.0, 0.0])
    scores = example_char_scores(10, offsets, logits)
    log_p = logits - np.log(np.exp(logits).sum())
    np.testing.assert_allclose(scores[:3], log_p[0], rtol=1e-6)
    np.testing.assert_allclose(scores[3:5], log_p[1], rtol=1e-6)
    np.testing.assert_allclose(scores[6:9], log_p[2], rtol=1e-6)
    assert scores[5] == NO_SCORE and scores[9] == NO_SCORE


def test_overlapping_windows_keep_the_max_and_normalise_over_distinct_tokens():
    # Two windows share the token (4, 8); it scores 1.0 in one window and 3.0 in the other.
    offsets = np.array([[0, 4], [4, 8], [4, 8], [8, 12]])
    logits = np.array([0.5, 1.0, 3.0, 2.0])
    scores = example_char_scores(12, offsets, logits)
    distinct = np.array([0.5, 3.0, 2.0])
    expected = distinct - np.log(np.exp(distinct).sum())
    np.testing.assert_allclose(scores[[0, 4, 8]], expected, rtol=1e-6)
    assert np.isclose(np.exp(scores[[0, 4, 8]]).sum(), 1.0)


def test_zero_width_tokens_are_ignored():
    scores = example_char_scores(4, np.array([[0, 2], [2, 2], [2, 4]]), np.array([0.0, 50.0, 0.0]))
    np.testing.assert_allclose(scores, np.log(0.5))


def test_window_mapping_and_decoding_recover_the_argmax_token_span():
    """The inverse direction: a window whose best start/end tokens are known decodes to their characters."""
    context = "alpha beta gamma delta"
    # window tokens: <s>, q, </s>, then context tokens alpha, beta, gamma, delta
    offsets = np.array([[-1, -1], [-1, -1], [-1, -1], [0, 5], [5, 10], [10, 16], [16, 22]])
    start = np.array([9.0, 9.0, 9.0, 0.0, 1.0, 5.0, 0.0])  # best start: " gamma" (offsets include the space)
    end = np.array([9.0, 9.0, 9.0, 0.0, 0.0, 1.0, 6.0])  # best end: " delta"
    scores = window_logits_to_char_scores(["q1"], [len(context)], np.array([0]), [offsets], [start], [end])
    s, e = scores.example(0).T
    best = decode_best_span(context, s.astype(np.float32), e.astype(np.float32), max_answer_chars=None)[0]
    assert context[best[0] : best[1]] == "gamma delta"


def test_windows_of_several_examples_are_grouped_by_example():
    offsets = [np.array([[-1, -1], [0, 2]]), np.array([[-1, -1], [0, 3]]), np.array([[-1, -1], [2, 4]])]
    logits = [np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([0.0, 2.0])]
    scores = window_logits_to_char_scores(["a", "b"], [4, 3], np.array([0, 1, 0]), offsets, logits, logits)
    assert list(scores.ids) == ["a", "b"] and list(scores.offsets) == [0, 4, 7]
    a_start, _ = scores.example(0).T
    assert a_start[2] > a_start[0]  # the (2, 4) token had the larger logit
    b_start, _ = scores.example(1).T
    np.testing.assert_allclose(b_start, 0.0, atol=1e-3)  # a single token takes all the probability


def test_char_scores_pack_start_and_end_as_two_channels():
    scores = char_scores(["x", "y"], [np.zeros(3), np.ones(2)], [np.ones(3), np.zeros(2)])
    assert scores.unit == "char" and scores.channels == ("start", "end") and scores.values.shape == (5, 2)
    np.testing.assert_array_equal(scores.example(1), [[1, 0], [1, 0]])
