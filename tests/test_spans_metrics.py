import numpy as np
import pandas as pd
import pytest

from foldnlp.errors import InputError
from foldnlp.tasks.spans.metrics import match_pairs, overlap_f1, qualifying_pairs, subset_f1, word_sets


def spans(*rows) -> pd.DataFrame:
    """A span table from (id, class, first word, last word inclusive) or (id, class, predictionstring) rows."""
    return pd.DataFrame([(r[0], r[1], " ".join(map(str, range(r[2], r[3] + 1))) if len(r) == 4 else r[2])
                         for r in rows], columns=["id", "class", "predictionstring"])


NO_SPANS = spans()


def test_word_sets():
    assert word_sets(["3 4 5", "5 3 3", " 7  "]) == [{3, 4, 5}, {3, 5}, {7}]
    assert word_sets(pd.Series(["0 1"], index=[9])) == [{0, 1}]
    assert word_sets([]) == []


def test_word_sets_names_bad_entries():
    with pytest.raises(InputError, match=r"^predictionstrings must list word indices \(non-negative integers, "
                                         r"space-separated\); not so in row\(s\) 1, 2, 3, 4, 5$"):
        word_sets(["1 2", "", "x 3", None, "-1", "1.0"])


def test_overlap_of_exactly_half_both_ways_matches():
    # |G ∩ P| = 2 of 4 true and of 4 predicted words.
    assert overlap_f1(spans(("a", "Claim", 0, 3)), spans(("a", "Claim", 2, 5))) == (1.0, {"Claim": 1.0})


@pytest.mark.parametrize("truth_words, predicted_words", [((0, 97), (49, 148)), ((49, 148), (0, 97))])
def test_half_of_one_and_49_percent_of_the_other_is_no_match(truth_words, predicted_words):
    # 49 shared words: 49/98 = 0.5 of one span, 49/100 = 0.49 of the other. TP 0, FP 1, FN 1.
    truth, predictions = spans(("a", "Claim", *truth_words)), spans(("a", "Claim", *predicted_words))
    assert overlap_f1(truth, predictions) == (0.0, {"Claim": 0.0})


def test_one_truth_two_qualifying_predictions_is_one_tp_and_one_fp():
    truth = spans(("a", "Claim", 0, 9))
    predictions = spans(("a", "Claim", 2, 9), ("a", "Claim", 0, 9))  # overlaps (0.8, 1.0) and (1.0, 1.0)
    assert overlap_f1(truth, predictions) == (pytest.approx(2 / 3), {"Claim": pytest.approx(2 / 3)})  # 1/(1+½)
    # Both tie on the larger overlap (1.0); the smaller one decides: the exact prediction is the match.
    gt_row, pred_row = qualifying_pairs(truth, predictions)
    assert (gt_row.tolist(), pred_row.tolist()) == ([0, 0], [1, 0])
    assert match_pairs(gt_row, pred_row, 1, 2).tolist() == [True, False]


def test_two_truths_one_prediction_is_one_tp_and_one_fn():
    # The prediction covers 5 of its 10 words in each truth and each truth entirely: it qualifies for both but
    # matches one (the competition's reference code would count two TPs here).
    truth = spans(("a", "Claim", 0, 4), ("a", "Claim", 5, 9))
    predictions = spans(("a", "Claim", 0, 9))
    assert overlap_f1(truth, predictions) == (pytest.approx(2 / 3), {"Claim": pytest.approx(2 / 3)})  # 1/(1+½)
    gt_row, pred_row = qualifying_pairs(truth, predictions)
    assert match_pairs(gt_row, pred_row, 2, 1).tolist() == [True, False]
    assert gt_row.tolist() == [0, 1]  # tied overlaps: the earlier truth first
    assert reference_f1(truth, predictions, one_to_one=False) == (1.0, {"Claim": 1.0})


def test_greedy_matching_goes_down_the_list():
    # Pairs best first: (g0, p0), (g0, p1), (g1, p0), (g1, p1), (g2, p1). g0-p0 first; then g1's and g2's only
    # live pair is with p1, and g1 comes first.
    taken = match_pairs(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 1]), 3, 2)
    assert taken.tolist() == [True, False, False, True, False]
    assert match_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0).tolist() == []


def test_a_class_without_predictions_scores_zero_and_counts():
    truth = spans(("a", "Claim", 0, 3), ("a", "Lead", 5, 9), ("b", "Lead", 0, 2))
    predictions = spans(("a", "Claim", 0, 3))
    assert overlap_f1(truth, predictions) == (0.5, {"Claim": 1.0, "Lead": 0.0})


def test_a_predicted_class_absent_from_the_truth_is_ignored():
    truth = spans(("a", "Claim", 0, 3), ("a", "Lead", 5, 9))
    predictions = spans(("a", "Claim", 0, 3), ("a", "Lead", 5, 9), ("a", "Rebuttal", 10, 12), ("b", "Rebuttal", 0, 1))
    assert overlap_f1(truth, predictions) == (1.0, {"Claim": 1.0, "Lead": 1.0})


def test_no_predictions_scores_zero():
    truth = spans(("a", "Claim", 0, 3), ("a", "Lead", 5, 9))
    assert overlap_f1(truth, NO_SPANS) == (0.0, {"Claim": 0.0, "Lead": 0.0})
    assert overlap_f1(truth, pd.DataFrame(columns=["id", "class", "predictionstring", "score"])) == \
        (0.0, {"Claim": 0.0, "Lead": 0.0})


def test_perfect_predictions_score_one_whatever_the_order():
    truth = spans(("a", "Claim", 0, 3), ("a", "Lead", 5, 9), ("b", "Claim", 0, 40), ("b", "Claim", 41, 41))
    shuffled = truth.iloc[[3, 1, 0, 2]].copy()
    shuffled["predictionstring"] = [" ".join(reversed(s.split())) + " " + s.split()[0] for s in
                                    shuffled["predictionstring"]]  # word order and repeats do not matter
    assert overlap_f1(truth, shuffled) == (1.0, {"Claim": 1.0, "Lead": 1.0})


def test_counts_by_hand():
    truth = spans(("a", "Claim", 0, 9), ("a", "Claim", 20, 29), ("b", "Claim", 0, 9), ("a", "Lead", 30, 39))
    predictions = spans(
        ("a", "Claim", 0, 7),  # TP (0.8, 1.0)
        ("a", "Claim", 22, 35),  # 8 of 10 true, 8 of 14 predicted: TP
        ("b", "Claim", 5, 20),  # 5 of 10 true but 5 of 16 predicted: FP
        ("b", "Claim", 0, 9),  # exact: TP
        ("c", "Claim", 0, 9),  # a document without truth: FP
        ("a", "Lead", 0, 9),  # the words of a's first Claim, not of its Lead: FP; the Lead is a FN
    )
    # Claim: TP 3, FP 2, FN 0 -> 3 / (3 + 1) = 0.75; Lead: TP 0, FP 1, FN 1 -> 0.
    assert overlap_f1(truth, predictions) == (pytest.approx(0.375), {"Claim": 0.75, "Lead": 0.0})


def test_ids_and_classes_compare_as_text():
    truth = pd.DataFrame({"id": [7], "class": ["Claim"], "predictionstring": ["1 2"]})
    assert overlap_f1(truth, spans(("7", "Claim", 1, 2)))[0] == 1.0


def test_subset_f1_scores_each_subset_as_overlap_f1_would():
    truth, predictions = random_spans(np.random.default_rng(5))
    keep = np.random.default_rng(6).random((4, len(predictions))) < 0.6
    keep[0] = True
    classes, f1 = subset_f1(truth, predictions, keep)
    assert classes == sorted(truth["class"].unique())
    for s in range(4):
        macro, per_class = overlap_f1(truth, predictions[keep[s]])
        assert f1[s].tolist() == [per_class[c] for c in classes]
    with pytest.raises(ValueError, match=r"keep must be \(subsets, \d+\)"):
        subset_f1(truth, predictions, keep[:, 1:])


def test_bad_tables_are_input_errors():
    with pytest.raises(InputError, match="^predictions lacks column\\(s\\) predictionstring; a span table has columns"):
        overlap_f1(spans(("a", "Claim", 0, 3)), pd.DataFrame({"id": ["a"], "class": ["Claim"]}))
    with pytest.raises(InputError, match="^truth has no spans to score$"):
        overlap_f1(NO_SPANS, spans(("a", "Claim", 0, 3)))
    bad = pd.DataFrame({"id": ["a", "a", "b"], "class": ["Claim"] * 3, "predictionstring": ["1 2", "1 x", ""]},
                       index=[10, 11, 12])
    with pytest.raises(InputError, match=r"^truth column predictionstring must list word indices .* row\(s\) 11, 12$"):
        overlap_f1(bad, spans(("a", "Claim", 0, 3)))
    with pytest.raises(InputError, match=r"^predictions column class is missing in row\(s\) 1$"):
        overlap_f1(spans(("a", "Claim", 0, 3)), pd.DataFrame({"id": ["a", "a"], "class": ["Claim", None],
                                                             "predictionstring": ["1", "2"]}))


# --- agreement with straightforward implementations -------------------------------------------------------------


def random_spans(rng, n_docs=30, classes=("Claim", "Lead", "Evidence")):
    """Truths that tile part of each document without overlapping; predictions near one of them (shifted, cut,
    stretched), over two neighbours (so that some qualify for both), anywhere, or of a class the truth lacks, so
    that every kind of pair occurs, ties and overlaps of exactly 0.5 included (short spans)."""
    truth, predictions = [], []
    for d in range(n_docs):
        doc, word = [], 0
        for _ in range(int(rng.integers(0, 8))):
            word += int(rng.integers(0, 2))
            length = int(rng.integers(1, 5))
            doc.append((str(rng.choice(classes[:2] if rng.random() < 0.5 else classes)), word, word + length - 1))
            word += length
        for _ in range(int(rng.integers(0, 10))):
            kind = rng.random()
            i = int(rng.integers(len(doc))) if doc else 0
            if doc and kind < 0.6:
                cls, first, last = doc[i]
                first = max(0, first + int(rng.integers(-2, 3)))
                last = max(first, last + int(rng.integers(-2, 3)))
            elif kind < 0.8 and (pairs := [j for j in range(len(doc) - 1) if doc[j][0] == doc[j + 1][0]]):
                j = pairs[int(rng.integers(len(pairs)))]
                cls, first, last = doc[j][0], doc[j][1], doc[j + 1][2]
            else:
                cls, first = str(rng.choice(classes + ("Rebuttal",))), int(rng.integers(0, 40))
                last = first + int(rng.integers(0, 8))
            predictions.append((f"d{d}", cls, first, last))
        truth += [(f"d{d}", *span) for span in doc]
    return spans(*truth), spans(*predictions)


def reference_f1(truth, predictions, *, one_to_one=True):
    """Python loops over all pairs of one id and class. one_to_one: greedy down the pairs sorted as the module
    docstring says; else the competition's reference code: per truth, its qualifying prediction with the largest
    max overlap (first on ties), one prediction free to match several truths."""
    gold, pred = word_sets(truth["predictionstring"]), word_sets(predictions["predictionstring"])
    g_id, g_class = truth["id"].tolist(), truth["class"].tolist()
    p_id, p_class = predictions["id"].tolist(), predictions["class"].tolist()
    result = {}
    for cls in sorted(set(g_class)):
        g_rows = [i for i in range(len(truth)) if g_class[i] == cls]
        p_rows = [j for j in range(len(predictions)) if p_class[j] == cls]
        pairs = []
        for i in g_rows:
            for j in p_rows:
                if g_id[i] != p_id[j]:
                    continue
                inter = len(gold[i] & pred[j])
                a, b = inter / len(gold[i]), inter / len(pred[j])
                if a >= 0.5 and b >= 0.5:
                    pairs.append((-max(a, b), -min(a, b), i, j))
        pairs.sort()
        if one_to_one:
            used_g, used_p = set(), set()
            for _, _, i, j in pairs:
                if i not in used_g and j not in used_p:
                    used_g.add(i)
                    used_p.add(j)
            tp, fp, fn = len(used_g), len(p_rows) - len(used_p), len(g_rows) - len(used_g)
        else:
            chosen = {}
            for key in sorted(pairs, key=lambda p: p[0]):  # stable: first on ties
                chosen.setdefault(key[2], key[3])
            tp = len(chosen)
            fp = len([j for j in p_rows if j not in chosen.values()])
            fn = len(g_rows) - len(chosen)
        result[cls] = tp / (tp + (fp + fn) / 2)
    return float(np.mean(list(result.values()))), result


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_a_reference_implementation_on_random_spans(seed):
    truth, predictions = random_spans(np.random.default_rng(seed))
    assert_same(overlap_f1(truth, predictions), reference_f1(truth, predictions))


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_the_competition_code_where_no_prediction_qualifies_twice(seed):
    truth, predictions = random_spans(np.random.default_rng(100 + seed))
    _, pred_row = qualifying_pairs(truth, predictions)
    doubles = np.flatnonzero(np.bincount(pred_row, minlength=len(predictions)) > 1)  # each pair occurs once
    predictions = predictions.drop(index=sorted(doubles)).reset_index(drop=True)
    assert_same(overlap_f1(truth, predictions), reference_f1(truth, predictions, one_to_one=False))


def assert_same(result, expected):
    (macro, per_class), (expected_macro, expected_per_class) = result, expected
    assert list(per_class) == list(expected_per_class)
    assert list(per_class.values()) == pytest.approx(list(expected_per_class.values()))
    assert macro == pytest.approx(expected_macro)
