"""Property tests over random Devanagari, Tamil, Latin and mixed-script texts: windowing and labels round-trip,
the character-score mapping agrees with its inverse, decoded answers are context substrings, Jaccard is a
symmetric score in [0, 1]."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from foldnlp.modeling import load_tokenizer
from foldnlp.tasks.qa.charscores import NO_SCORE, example_char_scores, window_logits_to_char_scores
from foldnlp.tasks.qa.decoding import decode_all
from foldnlp.tasks.qa.features import WindowSettings, build_features
from foldnlp.tasks.qa.metrics import jaccard

DEVANAGARI = [chr(c) for c in range(0x0915, 0x0939)]  # consonants
MATRAS = [chr(c) for c in range(0x093E, 0x094D)]  # vowel signs and virama (combining)
TAMIL = [chr(c) for c in range(0x0B95, 0x0BB9) if chr(c).isalpha()] + ["ா", "ி", "ு", "ெ", "ொ", "்"]
LATIN = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789")


def script_word(letters: list[str]) -> st.SearchStrategy[str]:
    # Zero-width joiners occur inside words (they shape conjuncts), never as word boundaries.
    syllable = st.tuples(st.sampled_from(letters), st.sampled_from(MATRAS + ["", "\u200c", "\u200d"])).map("".join)
    return st.lists(syllable, min_size=1, max_size=4).map("".join)


word = st.one_of(script_word(DEVANAGARI), script_word(TAMIL), st.text(st.sampled_from(LATIN), min_size=1,
                                                                       max_size=8),
                 st.sampled_from(["।", ",", "1947", "ई.पू.", "(", ")"]))
separator = st.sampled_from([" ", "  ", "\n", "\t", " । "])


@st.composite
def qa_example(draw):
    """(context, answer_start, answer_end): the answer is a run of whole words of the context, so its edges are
    token edges (an answer edge inside a token can only be labelled with the covering token, never exactly)."""
    words = draw(st.lists(word, min_size=3, max_size=120))
    seps = draw(st.lists(separator, min_size=len(words) - 1, max_size=len(words) - 1))
    first = draw(st.integers(0, len(words) - 1))
    last = draw(st.integers(first, min(len(words) - 1, first + 5)))
    context, starts = "", []
    for i, w in enumerate(words):
        starts.append(len(context))
        context += w + (seps[i] if i < len(seps) else "")
    return context, starts[first], starts[last] + len(words[last])


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(qa_example(), st.sampled_from([(48, 16), (64, 24), (96, 32)]))
def test_window_labels_recover_the_answer_exactly(tokenizer, example, lengths):
    context, start, end = example
    max_len, stride = lengths
    cfg = WindowSettings(max_len=max_len, doc_stride=stride, max_question_tokens=8)
    features = build_features(tokenizer, ["कौन सा शहर?"], [context], cfg, answer_starts=[start],
                              answer_texts=[context[start:end]])
    answer_tokens = 0
    for w in np.flatnonzero(features.has_answer):
        offsets = features.context_offsets[w]
        s, e = features.start_positions[w], features.end_positions[w]
        assert (offsets[s, 0], offsets[e, 1]) == (start, end)  # the labelled tokens span exactly the answer
        answer_tokens = e - s + 1
    if answer_tokens == 0:  # no window holds the whole answer: only possible when it is longer than the overlap
        encoded = tokenizer(context[start:end], add_special_tokens=False)["input_ids"]
        assert len(encoded) > stride
    ends = [o[o[:, 0] >= 0][-1, 1] for o in features.context_offsets if (o[:, 0] >= 0).any()]
    assert context[max(ends):].strip() == ""  # the windows reach the end of the context


@SETTINGS
@given(st.integers(1, 400), st.data())
def test_char_scores_and_their_inverse_agree(n_chars, data):
    """Random tokens (with gaps, zero-width tokens and repeats from overlapping windows) → per-character scores;
    reading each token's characters back gives its log-softmax over distinct tokens (the larger logit of repeats)."""
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n_chars), min_size=2, max_size=60))))
    tokens = [(a, b) for a, b in zip(cuts, cuts[1:]) if data.draw(st.booleans()) or a == b]
    assume(tokens)
    repeats = data.draw(st.lists(st.sampled_from(tokens), max_size=10))
    offsets = np.array(tokens + repeats, dtype=np.int64)
    logits = np.array(data.draw(st.lists(st.floats(-20, 20), min_size=len(offsets), max_size=len(offsets))))
    scores = example_char_scores(n_chars, offsets, logits)

    best = {}
    for (a, b), logit in zip(map(tuple, offsets), logits):
        if b > a:
            best[(a, b)] = max(best.get((a, b), -np.inf), logit)
    values = np.array(list(best.values()))
    log_prob = values - (values.max() + np.log(np.exp(values - values.max()).sum()))
    covered = np.zeros(n_chars, dtype=bool)
    for ((a, b), lp) in zip(best, log_prob):
        np.testing.assert_allclose(scores[a:b], lp, rtol=1e-5, atol=1e-5)
        covered[a:b] = True
    assert (scores[~covered] == NO_SCORE).all()
    if best:
        assert np.isclose(np.exp(log_prob).sum(), 1.0)


@SETTINGS
@given(qa_example(), st.integers(0, 2**32 - 1))
def test_decoded_answers_are_substrings_of_their_context(tokenizer, example, seed):
    context = example[0]
    features = build_features(tokenizer, ["क्या?"], [context], WindowSettings(max_len=48, doc_stride=16))
    rng = np.random.default_rng(seed)
    start = [rng.normal(scale=3, size=len(ids)) for ids in features.input_ids]
    end = [rng.normal(scale=3, size=len(ids)) for ids in features.input_ids]
    scores = window_logits_to_char_scores(["x"], [len(context)], features.example_index, features.context_offsets,
                                          start, end)
    (answer,) = decode_all([context], scores, max_answer_chars=60)
    assert answer in context and answer == answer.strip()
    assert answer or not context.strip()


texts = st.text(st.sampled_from(DEVANAGARI + MATRAS + TAMIL + LATIN + [" ", "\n", "\u200c", "।"]), max_size=40)


@given(texts, texts)
def test_jaccard_is_symmetric_and_in_unit_interval(a, b):
    score = jaccard(a, b)
    assert score == jaccard(b, a) and 0.0 <= score <= 1.0
    if a.split():
        assert jaccard(a, a) == 1.0
