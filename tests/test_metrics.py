import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldnlp.tasks.qa.metrics import jaccard, jaccard_report, mean_jaccard


def reference_jaccard(str1, str2):
    """Kaggle's chaii reference function, verbatim."""
    a = set(str1.lower().split())
    b = set(str2.lower().split())
    c = a.intersection(b)
    return float(len(c)) / (len(a) + len(b) - len(c))


@pytest.mark.parametrize(
    "prediction, truth, expected",
    [
        ("नई दिल्ली", "नई दिल्ली", 1.0),
        ("मुंबई", "चेन्नई", 0.0),
        ("New Delhi", "new DELHI", 1.0),
        ("a b", "b c", 1 / 3),
        ("a a a b", "a b b", 1.0),  # words compare as sets
        ("  a\tb\n", "a b", 1.0),  # any whitespace separates words
        ("1983 ई.", "1983", 0.5),
        ("தமிழ் நாடு", "தமிழ்", 0.5),
        ("", "भारत", 0.0),
    ],
)
def test_known_values(prediction, truth, expected):
    assert jaccard(prediction, truth) == pytest.approx(expected)


def test_both_empty_is_zero_where_the_reference_raises():
    with pytest.raises(ZeroDivisionError):
        reference_jaccard(" ", "")
    assert jaccard(" ", "") == 0.0


words = st.lists(st.sampled_from(["a", "B", "b", "नई", "दिल्ली", "தமிழ்", "1983", "ई.पू."]), max_size=6).map(" ".join)


@given(words, words)
def test_symmetric_in_range_and_matches_reference(prediction, truth):
    score = jaccard(prediction, truth)
    assert score == jaccard(truth, prediction)
    assert 0.0 <= score <= 1.0
    if prediction.split() or truth.split():
        assert score == reference_jaccard(prediction, truth)


def test_mean_jaccard():
    assert mean_jaccard(["a b", "x"], ["b c", "x"]) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="2 predictions but 1 truths"):
        mean_jaccard(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no examples"):
        mean_jaccard([], [])


def test_jaccard_report_overall_and_per_group():
    frame = pd.DataFrame(
        {
            "prediction": ["a b", "x", "नई", None],
            "answer_text": ["b c", "x", "नई दिल्ली", "nan"],
            "language": ["tamil", "tamil", "hindi", "hindi"],
        }
    )
    report = jaccard_report(frame, "language")
    assert list(report.columns) == ["language", "n", "jaccard"]
    assert report["language"].tolist() == ["all", "hindi", "tamil"]
    assert report["n"].tolist() == [4, 2, 2]
    # The missing prediction counts as '' (score 0), not as the word 'nan'.
    expected = [(1 / 3 + 1 + 0.5 + 0) / 4, (0.5 + 0) / 2, (1 / 3 + 1) / 2]
    assert report["jaccard"].tolist() == pytest.approx(expected)


def test_jaccard_report_without_groups_and_custom_columns():
    frame = pd.DataFrame({"PredictionString": ["a"], "truth": ["a b"]})
    report = jaccard_report(frame, prediction_col="PredictionString", truth_col="truth")
    assert report.to_dict("records") == [{"group": "all", "n": 1, "jaccard": 0.5}]


def test_jaccard_report_missing_column():
    with pytest.raises(ValueError, match="fold"):
        jaccard_report(pd.DataFrame({"prediction": ["a"], "answer_text": ["a"]}), "fold")
