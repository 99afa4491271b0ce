import numpy as np
import pandas as pd
import pytest

from foldnlp.errors import InputError
from foldnlp.scores import Scores
from foldnlp.tasks.spans.decoding import (
    ClassDecoding,
    bio_classes,
    crossfit_f1,
    decode_documents,
    decode_spans,
    fit_rules,
)
from foldnlp.tasks.spans.metrics import overlap_f1

CHANNELS = ("O", "B-A", "I-A", "B-B", "I-B")


def log_probs(tags, p=0.9) -> np.ndarray:
    """(len(tags), 5) log-probabilities: each word's tag at p, the other channels sharing 1 - p."""
    probs = np.full((len(tags), len(CHANNELS)), (1 - p) / (len(CHANNELS) - 1))
    probs[np.arange(len(tags)), [CHANNELS.index(t) for t in tags]] = p
    return np.log(probs)


def spans_of(tags, rules=None, p=0.9):
    return [span[:3] for span in decode_spans(log_probs(tags, p), CHANNELS, rules or {})]


def test_bio_classes():
    assert bio_classes(CHANNELS) == ("A", "B")
    assert bio_classes(("B-Lead", "O", "I-Claim", "I-Lead", "B-Claim")) == ("Lead", "Claim")
    for bad in [("O", "B-A"), ("B-A", "I-A"), ("O", "O", "B-A", "I-A"), ("O", "B-A", "I-A", "X-A"), ("O", "B-", "I-")]:
        with pytest.raises(InputError, match="^BIO channels must be one 'O' and one 'B-<class>' and 'I-<class>'"):
            bio_classes(bad)


def test_b_then_i_continues_and_the_score_is_the_mean_of_b_plus_i():
    (span,) = decode_spans(log_probs(["O", "B-A", "I-A", "I-A", "O"]), CHANNELS, {})
    assert span[:3] == ("A", 1, 3)
    assert span[3] == pytest.approx(0.9 + 0.025)  # P(B-A) + P(I-A) of every word
    assert isinstance(span[1], int) and isinstance(span[3], float)


def test_an_i_that_continues_nothing_starts_a_span():
    assert spans_of(["O", "I-A", "I-A"]) == [("A", 1, 2)]
    assert spans_of(["I-A", "O", "I-A"]) == [("A", 0, 0), ("A", 2, 2)]  # first in the document, after O


def test_b_b_gives_two_spans():
    assert spans_of(["B-A", "B-A", "I-A", "B-A"]) == [("A", 0, 0), ("A", 1, 2), ("A", 3, 3)]


def test_a_class_change_ends_a_span():
    assert spans_of(["B-A", "I-A", "I-B", "I-B", "I-A", "B-B"]) == [("A", 0, 1), ("B", 2, 3), ("A", 4, 4), ("B", 5, 5)]
    assert spans_of(["O", "O"]) == []
    assert spans_of([]) == []


def test_ties_go_to_the_first_channel():
    probs = np.array([[0.4, 0.4, 0.2, 0, 0], [0.1, 0.1, 0.4, 0.4, 0], [0.1, 0.1, 0.4, 0.0, 0.4]]) + 1e-9
    assert [s[:3] for s in decode_spans(np.log(probs), CHANNELS, {})] == [("A", 1, 2)]


def test_min_words_keeps_spans_of_at_least_that_many_words():
    tags = ["B-A", "I-A", "O", "B-A", "I-A", "I-A", "O", "B-B"]
    assert spans_of(tags, {"A": ClassDecoding(min_words=3)}) == [("A", 3, 5), ("B", 7, 7)]  # B keeps all
    assert spans_of(tags, {"A": ClassDecoding(min_words=2), "B": ClassDecoding(min_words=2)}) == [("A", 0, 1),
                                                                                                   ("A", 3, 5)]


def test_min_mean_prob_keeps_spans_probable_enough():
    probs = np.array([
        [0.1, 0.6, 0.3, 0.0, 0.0],  # B-A, P(B-A) + P(I-A) = 0.9
        [0.3, 0.1, 0.4, 0.1, 0.1],  # I-A, 0.5: the span's mean is 0.7
        [0.8, 0.1, 0.1, 0.0, 0.0],  # O
        [0.2, 0.1, 0.1, 0.3, 0.3],  # B-B (first of a tie), 0.6
    ]) + 1e-9
    logp = np.log(probs).astype(np.float16)  # as Scores store them
    assert [s[:3] + (round(s[3], 2),) for s in decode_spans(logp, CHANNELS, {})] == [("A", 0, 1, 0.7),
                                                                                     ("B", 3, 3, 0.6)]
    assert [s[0] for s in decode_spans(logp, CHANNELS, {"A": ClassDecoding(min_mean_prob=0.65)})] == ["A", "B"]
    assert [s[0] for s in decode_spans(logp, CHANNELS, {"A": ClassDecoding(min_mean_prob=0.75)})] == ["B"]
    both = {"A": ClassDecoding(2, 0.65), "B": ClassDecoding(1, 0.65)}
    assert [s[0] for s in decode_spans(logp, CHANNELS, both)] == ["A"]


def test_bad_rules_and_shapes_are_named():
    with pytest.raises(InputError, match="^decoding rules name class\\(es\\) C that the channels lack; their classes "
                                         "are A, B$"):
        decode_spans(log_probs(["O"]), CHANNELS, {"C": ClassDecoding()})
    with pytest.raises(InputError, match="^the decoding rule of class A must be a ClassDecoding; got 3$"):
        decode_spans(log_probs(["O"]), CHANNELS, {"A": 3})
    with pytest.raises(ValueError, match=r"word_log_probs must be \(n_words, 5\)"):
        decode_spans(np.zeros((3, 4)), CHANNELS, {})
    for bad in [dict(min_words=0), dict(min_words=2.0), dict(min_words=True)]:
        with pytest.raises(InputError, match="^min_words must be an integer >= 1"):
            ClassDecoding(**bad)
    for bad in [-0.1, 1.5, "0.5"]:
        with pytest.raises(InputError, match="^min_mean_prob must be a number in \\[0, 1\\]"):
            ClassDecoding(min_mean_prob=bad)


def reference_spans(logp, rules):
    """The decoding rule word by word."""
    classes = bio_classes(CHANNELS)
    probs = np.exp(logp.astype(np.float64))
    spans, current = [], None
    for w, tag in enumerate(CHANNELS[j] for j in logp.argmax(axis=1)):
        if current and tag == "I-" + current[0]:
            current[2] = w
            continue
        if current:
            spans.append(current)
        current = [tag[2:], w, w] if tag != "O" else None
    if current:
        spans.append(current)
    result = []
    for cls, a, b in spans:
        k = classes.index(cls)
        mean = probs[a : b + 1, 1 + 2 * k : 3 + 2 * k].sum(axis=1).mean()
        rule = rules.get(cls, ClassDecoding())
        if b - a + 1 >= rule.min_words and mean >= rule.min_mean_prob:
            result.append((cls, a, b, mean))
    return result


def random_documents(rng, n_docs, max_words=60):
    """Log-probabilities (float16, as Scores keep them) whose argmax tags run in stretches, as a model's do."""
    arrays = []
    for _ in range(n_docs):
        n = int(rng.integers(0, max_words))
        logits = rng.normal(0, 1, (n, len(CHANNELS)))
        logits[np.arange(n), np.repeat(rng.integers(0, 5, n), 3)[:n]] += 2  # the same channel favoured 3 words
        arrays.append((logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float16))
    return arrays


@pytest.mark.parametrize("seed", range(5))
def test_decoding_agrees_with_a_word_by_word_reference(seed):
    rules = {"A": ClassDecoding(2, 0.0), "B": ClassDecoding(1, 0.45)}
    for logp in random_documents(np.random.default_rng(seed), 20):
        got = decode_spans(logp, CHANNELS, rules)
        expected = reference_spans(logp, rules)
        assert [s[:3] for s in got] == [tuple(s[:3]) for s in expected]
        assert [s[3] for s in got] == pytest.approx([s[3] for s in expected])


def test_decode_documents_table():
    docs = [["B-A", "I-A", "O"], [], ["O", "O"], ["I-A", "I-A", "B-B", "I-B", "I-B"], ["I-A", "O"]]
    scores = Scores.from_lists(["d0", "d1", "d2", "d3", "d4"], [log_probs(t) for t in docs], "word", CHANNELS)
    table = decode_documents(scores, {})
    assert list(table.columns) == ["id", "class", "predictionstring", "score"]
    # d3's last I-A and d4's first do not join: a span never crosses documents.
    assert table[["id", "class", "predictionstring"]].values.tolist() == [
        ["d0", "A", "0 1"], ["d3", "A", "0 1"], ["d3", "B", "2 3 4"], ["d4", "A", "0"]]
    assert table["score"].tolist() == pytest.approx([0.925] * 4, abs=1e-3)  # float16 log-probabilities
    assert decode_documents(scores, {"A": ClassDecoding(min_words=2)})["predictionstring"].tolist() == ["0 1", "0 1",
                                                                                                        "2 3 4"]
    assert decode_documents(scores, {"A": ClassDecoding(5), "B": ClassDecoding(5)}).empty
    empty = decode_documents(Scores.from_lists([], [], "word", CHANNELS), {})
    assert empty.empty and list(empty.columns) == ["id", "class", "predictionstring", "score"]


def test_decode_documents_is_decode_spans_per_document():
    arrays = random_documents(np.random.default_rng(9), 30)
    scores = Scores.from_lists([f"e{i}" for i in range(30)], arrays, "word", CHANNELS)
    rules = {"A": ClassDecoding(2, 0.3)}
    expected = [(f"e{i}", c, " ".join(map(str, range(a, b + 1))), s)
                for i, logp in enumerate(arrays) for c, a, b, s in decode_spans(logp, CHANNELS, rules)]
    table = decode_documents(scores, rules)
    assert len(expected) > 30
    assert table[["id", "class", "predictionstring"]].values.tolist() == [list(e[:3]) for e in expected]
    assert table["score"].tolist() == pytest.approx([e[3] for e in expected])


def test_decode_documents_needs_word_log_probabilities():
    scores = Scores.from_lists(["a"], [log_probs(["O"])], "char", CHANNELS)
    with pytest.raises(InputError, match="^span decoding needs log-probabilities per word; got logprob scores per "
                                         "char$"):
        decode_documents(scores, {})


# --- fitting rules --------------------------------------------------------------------------------------------


def essays(seed=0, n_docs=40, short_true_a=0.0):
    """Word scores and truth where the loosest decoding is wrong in two ways: confident false spans of A of 1-2 words
    (only min_words removes them: true spans of A have 4-15 words, or 2 with chance short_true_a) and unsure false
    spans of B of 6 words (mean probability ~0.27; true B spans ~0.93: only min_mean_prob removes them)."""
    rng = np.random.default_rng(seed)
    ids, arrays, truth = [], [], []
    for d in range(n_docs):
        rows, word = [], 0
        for _ in range(int(rng.integers(3, 9))):
            gap = int(rng.integers(1, 4))
            rows.append(log_probs(["O"] * gap))
            word += gap
            kind = rng.choice(["A", "B", "false A", "false B"])
            if kind in ("A", "B"):
                length = 2 if kind == "A" and rng.random() < short_true_a else int(rng.integers(4, 16))
                truth.append((f"doc{d}", kind, " ".join(map(str, range(word, word + length)))))
                rows.append(log_probs([f"B-{kind}"] + [f"I-{kind}"] * (length - 1), p=0.9))
            elif kind == "false A":
                length = int(rng.integers(1, 3))
                rows.append(log_probs(["B-A"] + ["I-A"] * (length - 1), p=0.9))
            else:
                length = 6
                unsure = np.full((length, 5), [0.25, 0.245, 0.245, 0.0, 0.26]) + 1e-6  # I-B by a hair
                rows.append(np.log(unsure / unsure.sum(axis=1, keepdims=True)))
            word += length
        ids.append(f"doc{d}")
        arrays.append(np.concatenate(rows))
    return pd.DataFrame(truth, columns=["id", "class", "predictionstring"]), \
        Scores.from_lists(ids, arrays, "word", CHANNELS)


def with_noise(scores, seed, sigma):
    """The scores with Gaussian noise of sigma added to every log-probability, renormalised."""
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(len(scores)):
        logits = scores.example(i).astype(np.float64) + rng.normal(0, sigma, scores.example(i).shape)
        arrays.append(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
    return Scores.from_lists(scores.ids, arrays, "word", CHANNELS)


def f1_with(truth, scores, rules):
    return overlap_f1(truth, decode_documents(scores, rules))


def test_fit_rules_removes_short_false_positives_and_unsure_ones():
    truth, scores = essays()
    loose = f1_with(truth, scores, {})
    assert loose[1]["A"] < 0.9 and loose[1]["B"] < 0.9
    rules = fit_rules(truth, scores, ["A", "B"])
    # The first min_words that drops every 1-2-word span and keeps every true one; the first min_mean_prob above the
    # unsure spans' ~0.27. Ties keep the earlier grid point: the loosest rule that scores best.
    assert rules == {"A": ClassDecoding(3, 0.0), "B": ClassDecoding(1, 0.3)}
    assert f1_with(truth, scores, rules) == (1.0, {"A": 1.0, "B": 1.0})
    assert fit_rules(truth, scores, ["B"]) == {"B": ClassDecoding(1, 0.3)}  # A is not fit


def test_fit_rules_finds_each_class_its_best_grid_point():
    """Decoding once and filtering per grid point gives what decoding with each grid point's rule gives: the chosen
    rule of each class scores the best of the grid, decoded for real."""
    truth, scores = essays(seed=3, short_true_a=0.3)
    grid_words, grid_prob = (1, 2, 3, 5), (0.0, 0.3, 0.95)
    rules = fit_rules(truth, scores, ["A", "B"], grid_min_words=grid_words, grid_min_prob=grid_prob)
    fitted = f1_with(truth, scores, rules)[1]
    for w in grid_words:
        for p in grid_prob:
            per_class = f1_with(truth, scores, {"A": ClassDecoding(w, p), "B": ClassDecoding(w, p)})[1]
            assert per_class["A"] <= fitted["A"] and per_class["B"] <= fitted["B"]
    assert rules["A"].min_words == 3  # two-word true spans are lost, but fewer than the false ones removed


@pytest.mark.parametrize("seed", range(6))
def test_fit_rules_never_scores_below_the_loosest_rule(seed):
    rng = np.random.default_rng(seed)
    truth, scores = essays(seed=seed, n_docs=15, short_true_a=float(rng.random()))
    for s in (scores, with_noise(scores, seed, 1.0)):
        rules = fit_rules(truth, s, ["A", "B"])
        loosest = f1_with(truth, s, {"A": ClassDecoding(1, 0.0), "B": ClassDecoding(1, 0.0)})
        fitted = f1_with(truth, s, rules)
        assert fitted[0] >= loosest[0]
        assert all(fitted[1][c] >= loosest[1][c] for c in ("A", "B"))


def test_a_class_absent_from_the_truth_gets_the_loosest_rule():
    truth, scores = essays()
    truth = truth[truth["class"] == "A"]
    assert fit_rules(truth, scores, ["A", "B"], grid_min_words=(2, 3), grid_min_prob=(0.3, 0.5))["B"] == \
        ClassDecoding(2, 0.3)


def test_fit_rules_input_errors():
    truth, scores = essays(n_docs=3)
    with pytest.raises(InputError, match=r"^cannot fit decoding rules of class\(es\) C: the scores' classes are A, "
                                         "B$"):
        fit_rules(truth, scores, ["A", "C"])
    stranger = pd.concat([truth, pd.DataFrame({"id": ["zzz"], "class": ["A"], "predictionstring": ["0"]})])
    with pytest.raises(InputError, match="^truth has spans of document id\\(s\\) zzz that the scores lack$"):
        fit_rules(stranger, scores, ["A"])
    with pytest.raises(InputError, match="^fit_rules needs at least one min_words"):
        fit_rules(truth, scores, ["A"], grid_min_words=())


def test_crossfit_is_honest():
    truth, scores = essays(seed=1, n_docs=60, short_true_a=0.3)
    noisy = with_noise(scores, 0, 1.2)
    folds = pd.Series(np.arange(60) % 4, index=scores.ids)
    in_sample = f1_with(truth, noisy, fit_rules(truth, noisy, ["A", "B"]))
    honest = crossfit_f1(truth, noisy, folds, ["A", "B"])
    loosest = f1_with(truth, noisy, {})
    assert loosest[0] < honest[0] <= in_sample[0]
    assert list(honest[1]) == ["A", "B"]
    # By hand: each fold decoded with the rules of the other three.
    predictions = []
    for k in range(4):
        train, held = scores.ids[folds.to_numpy() != k], scores.ids[folds.to_numpy() == k]
        rules = fit_rules(truth[truth["id"].isin(train)], noisy.select(train), ["A", "B"])
        predictions.append(decode_documents(noisy.select(held), rules))
    assert honest == overlap_f1(truth, pd.concat(predictions))


def test_crossfit_needs_a_fold_for_every_document_and_two_folds():
    truth, scores = essays(n_docs=4)
    with pytest.raises(InputError, match="^folds has no fold for document id\\(s\\) doc3$"):
        crossfit_f1(truth, scores, pd.Series([0, 1, 0], index=scores.ids[:3]), ["A"])
    with pytest.raises(InputError, match="^crossfit_f1 needs documents of at least 2 folds; all 4 are in fold 0$"):
        crossfit_f1(truth, scores, pd.Series(0, index=scores.ids), ["A"])
