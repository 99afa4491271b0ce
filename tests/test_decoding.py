import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foldnlp.tasks.qa.charscores import NO_SCORE
from foldnlp.tasks.qa.charscores import char_scores as pack
from foldnlp.tasks.qa.decoding import decode_all, decode_best_span

LOW = -9.0  # log-probability of an unlikely token


def char_scores(context, tokens):
    """(start, end) float16 per character; tokens: [(char_start, char_end_exclusive, start_lp, end_lp)]."""
    start = np.full(len(context), NO_SCORE, dtype=np.float16)
    end = np.full(len(context), NO_SCORE, dtype=np.float16)
    for lo, hi, s, e in tokens:
        start[lo:hi], end[lo:hi] = s, e
    return start, end


def word_tokens(context, scores=None, leading_space=False):
    """One token per word (with its leading space, sentencepiece style, when leading_space); scores by word."""
    spans, pos = [], 0
    for word in context.split(" "):
        lo = pos - 1 if leading_space and pos > 0 else pos
        spans.append((lo, pos + len(word)))
        pos += len(word) + 1
    scores = scores or {}
    return [(lo, hi, *scores.get(i, (LOW, LOW))) for i, (lo, hi) in enumerate(spans)]


def test_known_best_span():
    context = "राजधानी नई दिल्ली है ।"
    start, end = char_scores(context, word_tokens(context, {1: (-0.1, LOW), 2: (-2.0, -0.2)}))
    spans = decode_best_span(context, start, end)
    s, e, score = spans[0]
    assert context[s:e] == "नई दिल्ली"
    assert score == pytest.approx(-0.1 - 0.2, abs=1e-3)
    assert [sp[2] for sp in spans] == sorted((sp[2] for sp in spans), reverse=True)


def test_multi_char_tokens_give_one_candidate_per_token_edge():
    # Every character of a token has the same score: without boundary rules the n-best list would fill with
    # (0, 1), (0, 2), ... slices of the same token.
    context = "दिल्ली भारत"
    tokens = [(0, 2, -0.1, -0.5), (2, 6, -3.0, -0.1), (6, 11, -2.0, -1.0)]  # 'दि' + 'ल्ली' + ' भारत'
    start, end = char_scores(context, tokens)
    spans = decode_best_span(context, start, end, n_best=20)
    assert spans[0][:2] == (0, 6)
    assert {(s, e) for s, e, _ in spans} == {(0, 6), (0, 2), (0, 11), (2, 6), (2, 11), (7, 11)}
    assert len(spans) == 6


def test_leading_and_trailing_spaces_of_tokens_are_never_span_edges():
    context = "New Delhi is big"
    start, end = char_scores(context, word_tokens(context, {1: (-0.1, -0.1)}, leading_space=True))
    spans = decode_best_span(context, start, end, n_best=50)
    assert spans[0][:2] == (4, 9)  # ' Delhi' token, without its space
    for s, e, _ in spans:
        assert not context[s].isspace() and not context[e - 1].isspace()


def test_trailing_space_token():
    context = "ab  cd"
    tokens = [(0, 4, -0.1, -0.1), (4, 6, LOW, LOW)]  # 'ab  ' carries two spaces
    start, end = char_scores(context, tokens)
    assert decode_best_span(context, start, end)[0][:2] == (0, 2)


def test_max_answer_chars_and_words():
    context = "a bb ccc dddd eeeee"
    start, end = char_scores(context, word_tokens(context, {0: (-0.1, LOW), 4: (LOW, -0.1), 2: (-1.0, -1.0)}))
    assert decode_best_span(context, start, end, max_answer_chars=None)[0][:2] == (0, 19)
    limited = decode_best_span(context, start, end, max_answer_chars=8, n_best=50)
    assert limited and all(e - s <= 8 for s, e, _ in limited)
    assert limited[0][:2] == (0, 8)  # 'a bb ccc': best start, and the best end within 8 characters
    by_words = decode_best_span(context, start, end, max_answer_chars=None, max_answer_words=2, n_best=50)
    assert by_words and all(len(context[s:e].split()) <= 2 for s, e, _ in by_words)
    assert by_words[0][:2] == (5, 8)  # 'ccc': -2.0 beats 'a bb' (-0.1 + LOW)


def test_no_score_characters_are_skipped():
    context = "ab cd ef"
    start, end = char_scores(context, [(0, 2, -5.0, -5.0), (6, 8, -6.0, -6.0)])  # 'cd' uncovered
    spans = decode_best_span(context, start, end, n_best=20)
    assert {(s, e) for s, e, _ in spans} == {(0, 2), (0, 8), (6, 8)}
    shifted = (start.astype(np.float32) - 0.7).astype(np.float16)  # NO_SCORE after an ensemble's log-weight
    assert all(s != 3 for s, _, _ in decode_best_span(context, shifted, end, n_best=20))
    nothing = np.full(len(context), NO_SCORE, dtype=np.float16)
    assert decode_best_span(context, nothing, nothing) == []
    assert decode_best_span("", np.zeros(0), np.zeros(0)) == []


def test_best_span_is_exact_even_when_top_k_misses_it():
    # The top start lies after the top end, so the 1 × 1 grid is empty; the exact search still finds the best.
    context = "a b c d"
    start, end = char_scores(context, [(0, 1, -3, -0.5), (2, 3, LOW, LOW), (4, 5, LOW, LOW), (6, 7, -0.1, -4)])
    for n_best in (1, 5):
        best = decode_best_span(context, start, end, n_best=n_best, top_k=1)[0]
        assert best[:2] == (0, 1)
        assert best[2] == pytest.approx(-3.5)


def test_settings_and_lengths_are_checked():
    start = end = np.zeros(3, dtype=np.float16)
    with pytest.raises(ValueError, match="max_answer_chars"):
        decode_best_span("abc", start, end, max_answer_chars=0)
    with pytest.raises(ValueError, match="n_best"):
        decode_best_span("abc", start, end, n_best=0)
    with pytest.raises(ValueError, match="4 characters"):
        decode_best_span("abcd", start, end)


def test_decode_all():
    contexts = ["राजधानी नई दिल्ली", "ab cd"]
    first = char_scores(contexts[0], word_tokens(contexts[0], {2: (-0.1, -0.1)}))
    second = char_scores(contexts[1], [])  # nothing covered: no valid span
    scores = pack(["q1", "q2"], [first[0], second[0]], [first[1], second[1]])
    assert decode_all(contexts, scores) == ["दिल्ली", ""]
    assert decode_all(contexts, scores, max_answer_chars=3) == ["नई", ""]
    with pytest.raises(ValueError, match="'q2'"):
        decode_all([contexts[0], "abc"], scores)
    with pytest.raises(ValueError, match="1 contexts"):
        decode_all(contexts[:1], scores)


# --- random inputs -------------------------------------------------------------------------------------------

ALPHABET = list("ab ") + list("नईदिल्ली") + list("தமிழ்நாடு") + ["\n", "\u00a0"]
SCORE_VALUES = np.array([-0.25, -0.5, -1.0, -2.0, -3.5, NO_SCORE], dtype=np.float16)  # few values: many ties


def random_scores(context, seed):
    """Random tokens (runs of 1-4 characters, spaces included) with scores from a small set."""
    rng = np.random.default_rng(seed)
    tokens, pos = [], 0
    while pos < len(context):
        hi = min(len(context), pos + int(rng.integers(1, 5)))
        tokens.append((pos, hi, rng.choice(SCORE_VALUES), rng.choice(SCORE_VALUES)))
        pos = hi
    return char_scores(context, tokens)


def brute_force(context, start, end, max_chars, max_words):
    """Every valid span by the documented rules, best first: plain O(L²) loops."""
    n = len(context)
    real = lambda v: v > NO_SCORE / 2  # noqa: E731
    is_start = [
        not context[i].isspace() and real(start[i])
        and (i == 0 or start[i] != start[i - 1] or context[i - 1].isspace())
        for i in range(n)
    ]
    is_end = [
        not context[i].isspace() and real(end[i])
        and (i == n - 1 or end[i] != end[i + 1] or context[i + 1].isspace())
        for i in range(n)
    ]
    spans = []
    for s in range(n):
        for e in range(s, n):
            fits = (max_chars is None or e - s + 1 <= max_chars) and (
                max_words is None or len(context[s : e + 1].split()) <= max_words
            )
            if is_start[s] and is_end[e] and fits:
                spans.append((s, e + 1, float(np.float32(start[s]) + np.float32(end[e]))))
    return sorted(spans, key=lambda sp: -sp[2])


limits = st.sampled_from([(None, None), (5, None), (None, 2), (8, 3), (1, None), (None, 1)])


@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from(ALPHABET), max_size=40), st.integers(0, 2**32 - 1), limits)
def test_fast_decoder_agrees_with_brute_force(context, seed, limit):
    start, end = random_scores(context, seed)
    expected = brute_force(context, start, end, *limit)
    kw = dict(max_answer_chars=limit[0], max_answer_words=limit[1])
    full = decode_best_span(context, start, end, n_best=10, top_k=len(context) + 1, **kw)
    assert [sp[2] for sp in full] == [sp[2] for sp in expected[:10]]
    assert set(full) <= set(expected)
    best = decode_best_span(context, start, end, n_best=1, **kw)  # exact search alone
    assert [sp[2] for sp in best] == [sp[2] for sp in expected[:1]]
    assert set(best) <= set(expected)


@settings(max_examples=100, deadline=None)
@given(st.text(st.sampled_from(ALPHABET), max_size=200), st.integers(0, 2**32 - 1))
def test_spans_are_valid_substrings(context, seed):
    start, end = random_scores(context, seed)
    spans = decode_best_span(context, start, end, max_answer_chars=30, max_answer_words=4, n_best=20, top_k=8)
    assert len(spans) <= 20 and len(set(spans)) == len(spans)
    for s, e, score in spans:
        assert 0 <= s < e <= len(context) and e - s <= 30
        answer = context[s:e]
        assert answer == answer.strip() and 1 <= len(answer.split()) <= 4
        assert score == float(np.float32(start[s]) + np.float32(end[e - 1]))
        assert start[s] > NO_SCORE / 2 and end[e - 1] > NO_SCORE / 2
