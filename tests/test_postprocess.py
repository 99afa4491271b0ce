import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldnlp.tasks.qa.postprocess import clean_answer, is_edge_punctuation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  नई दिल्ली \n", "नई दिल्ली"),  # whitespace
        ("भारत।", "भारत"),  # danda
        ("भारत॥", "भारत"),  # double danda
        ("1983.", "1983"),  # a number's final dot ends the sentence
        ("3.5.", "3.5"),
        ("मुंबई, ", "मुंबई"),
        ("- 1983 -", "1983"),
        ("…अकबर!?", "अकबर"),
        ('"hello"', "hello"),
        ("“भारत”", "भारत"),
        ("‘தமிழ்’", "தமிழ்"),
        ("'quoted' word", "'quoted' word"),  # the leading quote pairs inside the answer
        ("word'", "word"),  # unpaired quote
        ("Rama's", "Rama's"),  # an apostrophe is not a quote
        ("‘Rama’s’", "Rama’s"),
        ("...", ""),  # nothing but punctuation
        ("القاهرة،", "القاهرة"),  # Arabic comma
        ("؟مصر؛", "مصر"),  # Arabic question mark and semicolon
        ("東京。", "東京"),  # CJK full stop
        ("¿Madrid?", "Madrid"),
        ("«Paris»", "Paris"),
    ],
)
def test_edge_punctuation(raw, expected):
    assert clean_answer(raw) == expected


@pytest.mark.parametrize("raw", ["50%", "٪50", "#1", "AT&T", "@user", "§ 3", "डॉ॰"])
def test_punctuation_that_belongs_to_the_answer_stays(raw):
    assert clean_answer(raw) == raw


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("ई.पू.", "ई.पू."),  # dotted Devanagari abbreviation (BCE)
        ("300 ई.पू.।", "300 ई.पू."),
        ("कि.मी.", "कि.मी."),
        ("கி.மு.", "கி.மு."),  # Tamil BCE
        ("ई.", "ई."),  # single akshara
        ("डॉ.", "डॉ."),  # consonant + vowel sign is one akshara
        ("प्रो.", "प्रो."),  # virama-joined conjunct is one akshara
        ("U.S.", "U.S."),
        ("Washington St.", "Washington St."),
        ("Dr.", "Dr."),
        ("John A.", "John A."),
        ("U.S..", "U.S."),
        ("अमेरिका.", "अमेरिका"),  # an ordinary word: the dot ends a sentence
    ],
)
def test_abbreviation_dot_kept(raw, expected):
    assert clean_answer(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("(1983)", "1983"),  # a pair enclosing the whole answer goes
        ("((1983)", "1983"),
        ("[1983]", "1983"),
        ("(ई.पू.)", "ई.पू."),
        ("मराठी (भाषा)", "मराठी (भाषा)"),  # the closing paren has its partner inside
        ("(भाषा) मराठी", "(भाषा) मराठी"),
        ("(a) (b)", "(a) (b)"),  # edges pair with inner brackets, not with each other
        ("मराठी भाषा)", "मराठी भाषा"),  # unpaired
        ("(मराठी भाषा", "मराठी भाषा"),
        ("भाषा (", "भाषा"),
    ],
)
def test_brackets(raw, expected):
    assert clean_answer(raw) == expected


def test_context_with_danda_sentences_keeps_dot_after_letters():
    hindi = "अकबर का जन्म हुआ। वह प्रसिद्ध स. था। उसने राज किया।"
    assert clean_answer("प्रसिद्ध.", hindi) == "प्रसिद्ध."
    assert clean_answer("प्रसिद्ध.") == "प्रसिद्ध"  # without the context the dot looks sentence-final
    assert clean_answer("अमेरिका.", hindi) == "अमेरिका."
    assert clean_answer("1983.", hindi) == "1983"  # digits never take an abbreviation dot
    dotted = "He was born in 1983. He moved. Then he left. अकबर।"
    assert clean_answer("अमेरिका.", dotted) == "अमेरिका"


alphabet = st.sampled_from(list("ab1 .।(),'\"“”‘’-अकईपूडॉமுத்") + ["\u093f", "\u094d", "\n"])


@given(st.text(alphabet, max_size=20), st.booleans())
def test_idempotent_edge_only_and_never_empty(raw, with_context):
    context = "यह। वह।" if with_context else None
    cleaned = clean_answer(raw, context)
    assert clean_answer(cleaned, context) == cleaned
    assert cleaned in raw  # only edges are removed
    assert cleaned == cleaned.strip()
    if any(not ch.isspace() and not is_edge_punctuation(ch) for ch in raw):
        assert cleaned and any(not is_edge_punctuation(ch) for ch in cleaned)


def test_decode_falls_back_to_the_raw_span_when_cleaning_leaves_nothing():
    import numpy as np
    import pandas as pd

    from foldnlp.config import load_config
    from foldnlp.tasks import get_task
    from foldnlp.tasks.qa.charscores import char_scores

    context = "पहला वाक्य। दूसरा"
    start = np.full(len(context), -20.0)
    end = np.full(len(context), -20.0)
    danda = context.index("।")
    start[danda] = end[danda] = 0.0  # the model is sure the answer is the danda alone
    scores = char_scores(["q"], [start], [end])
    frame = pd.DataFrame({"id": ["q"], "context": [context]})
    task = get_task(load_config(None))
    assert task.decode(frame, scores, clean=False)["prediction"].tolist() == ["।"]
    assert task.decode(frame, scores)["prediction"].tolist() == ["।"]
