"""Word windows of span segmentation: every token knows its word, windows of features.max_len overlapping by
features.doc_stride cover every token, per-token BIO labels on first or all sub-tokens, and window outputs averaged
back into per-word scores."""

import unicodedata

import numpy as np
import pytest

from foldnlp.batching import IGNORE_INDEX
from foldnlp.errors import InputError
from foldnlp.modeling import load_tokenizer
from foldnlp.tasks.spans.data import bio_channels, bio_labels, read_bio_file
from foldnlp.tasks.spans.windows import NO_WORD, WordWindows, build_word_windows, check_settings, word_log_probs
from spans import BIO_TRAIN

CLASSES = ("NEL", "NEP")
CHANNELS = bio_channels(CLASSES)  # O, B-NEL, I-NEL, B-NEP, I-NEP
INSIDE = np.array([0, 2, 2, 4, 4])  # B-X → I-X, others unchanged


@pytest.fixture(scope="module")
def tokenizer(spans_model_dir):
    return load_tokenizer(str(spans_model_dir))


@pytest.fixture(scope="module")
def documents() -> list[list[str]]:
    """IL-NER documents of 4 sentences: 40 to 215 words, most of them several sub-tokens long."""
    return [text.split() for text in read_bio_file(BIO_TRAIN, 4)["text"].head(12)]


def pieces(tokenizer, ids) -> str:
    """The text of a word's tokens: WordPiece's ## continuation marks dropped."""
    return "".join(t[2:] if t.startswith("##") else t for t in tokenizer.convert_ids_to_tokens(list(ids)))


def normalised(word: str) -> str:
    """The word as the tokenizer sees it (its normaliser is NFKC; its pre-tokenizer splits, never drops)."""
    return "".join(unicodedata.normalize("NFKC", word).split())


def test_every_token_maps_back_to_its_word(tokenizer, documents):
    """The tokens a window gives word k decode to word k; a word cut by the window's edge keeps a run of its own
    tokens (the start of them at the window's end, the end of them at its start)."""
    windows = build_word_windows(tokenizer, documents, 64, 16, label_all_subtokens=True)
    whole = cut = 0
    for w in range(len(windows)):
        words, ids = windows.token_words[w], windows.input_ids[w]
        assert len(words) == len(ids) == len(windows.token_first[w])
        assert words[0] == words[-1] == NO_WORD and (words[1:-1] != NO_WORD).all()
        doc = documents[windows.example_index[w]]
        own = tokenizer(doc, is_split_into_words=True, add_special_tokens=False)
        own_words = np.array(own.word_ids())
        for k in np.unique(words[1:-1]):
            mine = ids[words == k].tolist()
            tokens = np.array(own["input_ids"])[own_words == k].tolist()
            if len(mine) == len(tokens):
                assert mine == tokens
                assert pieces(tokenizer, mine) in (normalised(doc[k]), tokenizer.unk_token), (doc[k], mine)
                whole += 1
            else:
                assert k in (words[1], words[-2]) and mine in (tokens[:len(mine)], tokens[-len(mine):])
                cut += 1
    assert whole > 500 and cut > 0


def test_whole_documents_tokens_each_have_their_word(tokenizer, documents):
    """In one window wide enough for the document, the words are 0..n-1 in order, each with its own tokens."""
    doc = documents[0]
    windows = build_word_windows(tokenizer, [doc], 512, 16, label_all_subtokens=True)
    assert len(windows) == 1
    words = windows.token_words[0]
    inner = words[1:-1]
    assert words[0] == words[-1] == NO_WORD and (inner != NO_WORD).all()
    assert np.unique(inner).tolist() == list(range(len(doc))) and (np.diff(inner) >= 0).all()
    for k, word in enumerate(doc):
        assert pieces(tokenizer, windows.input_ids[0][words == k]) in (normalised(word), tokenizer.unk_token)
    first = windows.token_first[0]
    assert not first[0] and not first[-1] and first[1:-1].sum() == len(doc)


def test_windows_of_max_len_overlap_by_doc_stride_and_cover_every_token(tokenizer, documents):
    max_len, stride = 64, 16
    budget = max_len - 2  # [CLS] ... [SEP]
    windows = build_word_windows(tokenizer, documents, max_len, stride, label_all_subtokens=True)
    assert windows.example_index.tolist() == sorted(windows.example_index.tolist())
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for i, doc in enumerate(documents):
        ids = tokenizer(doc, is_split_into_words=True, add_special_tokens=False)["input_ids"]
        mine = np.flatnonzero(windows.example_index == i)
        assert len(ids) > budget  # every document here needs more than one window
        covered = np.zeros(len(ids), dtype=int)
        start = 0
        for n, w in enumerate(mine):
            window = windows.input_ids[w]
            assert len(window) == max_len and window[0] == cls and window[-1] == sep
            inner = window[1:-1].tolist()
            if n == len(mine) - 1:
                start = len(ids) - budget  # the last window ends the document
            assert inner == ids[start:start + budget]
            covered[start:start + budget] += 1
            start += budget - stride
        assert (covered >= 1).all()
        # consecutive windows share doc_stride tokens (the last one at least that many)
        assert covered.sum() - len(ids) >= stride * (len(mine) - 1)


def test_a_document_that_fits_is_one_window(tokenizer):
    doc = "मुत्थुस्वामी दीक्षितार के भाई".split()
    windows = build_word_windows(tokenizer, [doc, doc[:2]], 64, 16, label_all_subtokens=True)
    assert windows.example_index.tolist() == [0, 1]
    ids = tokenizer(doc, is_split_into_words=True)["input_ids"]
    assert windows.input_ids[0].tolist() == ids  # the tokenizer's own [CLS] ... [SEP], no padding
    assert len(build_word_windows(tokenizer, [], 64, 16, label_all_subtokens=True)) == 0


def labelled(tokenizer, all_subtokens: bool):
    """A document whose words 1-2 are a NEP span and word 3 a NEL span, each word several sub-tokens long."""
    doc = "के मुत्थुस्वामी दीक्षितार प्रारम्भ में".split()
    labels = bio_labels(len(doc), [("NEP", 1, 2), ("NEL", 3, 3)], CLASSES)
    windows = build_word_windows(tokenizer, [doc], 64, 16, [labels], label_all_subtokens=all_subtokens,
                                 begin_to_inside=INSIDE)
    return windows, labels


def test_all_sub_tokens_take_b_on_the_first_and_i_on_the_rest(tokenizer):
    windows, labels = labelled(tokenizer, True)
    words, first, got = windows.token_words[0], windows.token_first[0], windows.labels[0]
    assert (np.bincount(words[words != NO_WORD]) > 1)[1:4].all()  # the span words have several sub-tokens
    assert (got[words == NO_WORD] == IGNORE_INDEX).all()
    expected = np.where(first, labels[words], INSIDE[labels[words]])
    assert got[words != NO_WORD].tolist() == expected[words != NO_WORD].tolist()
    names = [CHANNELS[j] for j in got[words == 1]]
    assert names[0] == "B-NEP" and set(names[1:]) == {"I-NEP"}
    assert {CHANNELS[j] for j in got[words == 2]} == {"I-NEP"}
    assert [CHANNELS[j] for j in got[words == 3]][:2] == ["B-NEL", "I-NEL"]
    assert {CHANNELS[j] for j in got[(words == 0) | (words == 4)]} == {"O"}


def test_first_sub_token_only_ignores_the_rest(tokenizer):
    windows, labels = labelled(tokenizer, False)
    words, first, got = windows.token_words[0], windows.token_first[0], windows.labels[0]
    assert (got[words == NO_WORD] == IGNORE_INDEX).all()
    assert (got[(words != NO_WORD) & ~first] == IGNORE_INDEX).all()
    assert got[first].tolist() == labels.tolist()


def test_window_settings_that_leave_too_few_tokens_are_refused(tokenizer):
    check_settings(tokenizer, 64, 16)
    with pytest.raises(InputError, match="doc_stride"):
        check_settings(tokenizer, 64, 62)
    with pytest.raises(InputError, match="at least 8"):
        check_settings(tokenizer, 8, 0)


def softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def hand_made():
    """Document 0: 3 words in two windows that share word 1; word 1 has two sub-tokens (b, c) in window 0 and its
    second (c) in window 1. Document 1: 2 words, word 1 covered by no token. 2 channels."""
    windows = WordWindows(
        input_ids=[np.zeros(5, np.int64), np.zeros(4, np.int64), np.zeros(3, np.int64)],
        example_index=np.array([0, 0, 1]),
        token_words=[np.array([-1, 0, 1, 1, -1]), np.array([-1, 1, 2, -1]), np.array([-1, 0, -1])],
        token_first=[np.array([0, 1, 1, 0, 0], bool), np.array([0, 0, 1, 0], bool), np.array([0, 1, 0], bool)])
    logits = [np.array([[9.0, -9], [2, 0], [0, 1], [0, 3], [-9, 9]]),
              np.array([[9.0, -9], [1, 1], [0, 2], [9, -9]]),
              np.array([[0.0, 0], [0, 4], [5, 5]])]
    return windows, logits


def test_word_scores_average_the_sub_tokens_of_every_window():
    windows, logits = hand_made()
    p = [softmax(x) for x in logits]
    doc0, doc1 = word_log_probs(windows, logits, np.array([3, 2]), all_subtokens=True)
    assert doc0.shape == (3, 2) and doc1.shape == (2, 2)
    np.testing.assert_allclose(np.exp(doc0[0]), p[0][1])
    np.testing.assert_allclose(np.exp(doc0[1]), (p[0][2] + p[0][3] + p[1][1]) / 3)  # both windows
    np.testing.assert_allclose(np.exp(doc0[2]), p[1][2])
    np.testing.assert_allclose(np.exp(doc1[0]), p[2][1])
    np.testing.assert_allclose(np.exp(doc0).sum(1), 1.0)


def test_first_sub_token_scoring_reads_only_first_sub_tokens():
    windows, logits = hand_made()
    p = [softmax(x) for x in logits]
    doc0, _ = word_log_probs(windows, logits, np.array([3, 2]), all_subtokens=False)
    np.testing.assert_allclose(np.exp(doc0[1]), p[0][2])  # window 1 holds only word 1's second sub-token
    np.testing.assert_allclose(np.exp(doc0[2]), p[1][2])


def test_a_word_no_token_covers_is_o():
    windows, logits = hand_made()
    for all_subtokens in (True, False):
        _, doc1 = word_log_probs(windows, logits, np.array([3, 2]), all_subtokens=all_subtokens)
        assert doc1[1, 0] == 0.0 and np.exp(doc1[1, 1]) < 1e-20  # channel 0, O, for sure
