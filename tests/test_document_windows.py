"""Windows over long documents: the special-token template, head / head+tail / strided windows, pair input, and
settings that cannot work."""

import numpy as np
import pytest

from foldnlp.errors import InputError
from foldnlp.modeling import load_tokenizer
from foldnlp.tasks.document.windows import (
    WindowSettings,
    build_windows,
    check_settings,
    document_pieces,
    special_template,
)


@pytest.fixture(scope="module")
def tokenizer(document_model_dir):
    return load_tokenizer(str(document_model_dir))


def settings(truncation, max_len=12, doc_stride=2, tail_tokens=3, max_pair_tokens=4):
    return WindowSettings(max_len, doc_stride, truncation, tail_tokens, max_pair_tokens)


TOKENS = list(range(100, 120))  # a document of 20 tokens


def test_a_short_document_is_one_whole_piece_whatever_the_truncation():
    for truncation in ("head", "head_tail", "windows"):
        assert document_pieces(TOKENS[:5], 10, settings(truncation)) == [TOKENS[:5]]


def test_head_keeps_the_first_tokens():
    assert document_pieces(TOKENS, 10, settings("head")) == [TOKENS[:10]]


def test_head_tail_keeps_the_first_and_the_last_tokens():
    assert document_pieces(TOKENS, 10, settings("head_tail", tail_tokens=3)) == [TOKENS[:7] + TOKENS[-3:]]


def test_windows_cover_every_token_with_the_stride_as_overlap_and_the_last_ending_the_text():
    pieces = document_pieces(TOKENS, 8, settings("windows", doc_stride=3))
    starts = [TOKENS.index(p[0]) for p in pieces]
    assert starts == [0, 5, 10, 12]  # step 8 - 3 = 5; the last window is moved back to end at the last token
    assert all(len(p) == 8 for p in pieces)
    assert sorted({t for p in pieces for t in p}) == TOKENS


def test_template_is_read_off_the_tokenizer(tokenizer):
    single, pair = special_template(tokenizer, pair=False), special_template(tokenizer, pair=True)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert (single.prefix, single.middle, single.suffix) == ((cls,), (), (sep,))
    assert (pair.prefix, pair.middle, pair.suffix) == ((cls,), (sep,), (sep,))


def test_windows_equal_the_tokenizers_own_encoding_when_nothing_is_cut(tokenizer):
    texts, pairs = ["the film was superb", "awful"], ["query one", "two"]
    built = build_windows(tokenizer, texts, None, settings("head", max_len=64))
    assert [w.tolist() for w in built.input_ids] == tokenizer(texts)["input_ids"]
    built = build_windows(tokenizer, texts, pairs, settings("head", max_len=64, max_pair_tokens=8))
    assert [w.tolist() for w in built.input_ids] == tokenizer(texts, pairs)["input_ids"]


def test_windows_keep_max_len_with_pair_and_map_to_their_documents(tokenizer):
    long = " ".join(["superb film"] * 40)
    built = build_windows(tokenizer, [long, "", "awful"], ["a query about the film plot"] * 3,
                          settings("windows", max_len=16, doc_stride=4, max_pair_tokens=3))
    assert max(len(w) for w in built.input_ids) == 16
    counts = np.bincount(built.example_index)
    assert counts[0] > 1 and counts[1] == 1 and counts[2] == 1  # an empty text still gets its window
    assert built.input_ids[int(np.flatnonzero(built.example_index == 1)[0])].tolist()[:2] == [
        tokenizer.cls_token_id, tokenizer.sep_token_id]


@pytest.mark.parametrize("window, pair, message", [
    (settings("head", max_len=8), False, "leaves 6 tokens of the document"),
    (settings("head_tail", max_len=12, tail_tokens=10), False, "tail_tokens 10 must be below the 10"),
    (settings("windows", max_len=12, doc_stride=10), False, "doc_stride 10 must be below the 10"),
    (settings("head", max_len=14, max_pair_tokens=4), True, "and 4 of the pair"),
])
def test_settings_that_leave_too_little_room_are_refused_in_one_line(tokenizer, window, pair, message):
    with pytest.raises(InputError, match=message):
        check_settings(tokenizer, window, pair=pair, section="classify")
