"""Each post-processing rule of a task can be switched off in the config (Task.postprocess_rules names the
override), switching it off changes decoding where it should, and ensemble.py prints the out-of-fold CV with every
rule and without each one."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest

from foldnlp.config import from_dict, load_config, with_overrides
from foldnlp.postprocess_ablation import ablation_report, rule_effects
from foldnlp.scores import VALUE, Scores
from foldnlp.tasks import get_task
from foldnlp.tasks.qa.charscores import char_scores
from foldnlp.tasks.qa.postprocess import ALL_STEPS, clean_answer
from spans import word_scores

QA_RULES = ["strip_whitespace", "strip_punctuation", "strip_enclosing_pairs", "keep_paired_brackets",
            "keep_abbreviation_dots", "danda_keeps_dots"]


def rows_of(report: str) -> dict[str, tuple[float, float, str]]:
    """rule → (CV without it, delta, verdict) from an ablation table."""
    found = re.findall(r"^  (.+?) +(\d+\.\d{4})  ([+-]\d+\.\d{4})  (.+)$", report, re.MULTILINE)
    return {rule: (float(without), float(delta), verdict) for rule, without, delta, verdict in found}


@pytest.mark.parametrize("step, raw, context, cleaned, without", [
    ("strip_whitespace", " भारत ", None, "भारत", " भारत "),
    ("strip_punctuation", "भारत।", None, "भारत", "भारत।"),
    ("strip_enclosing_pairs", "(1983)", None, "1983", "(1983)"),  # the pair is paired: kept as a whole
    ("keep_paired_brackets", "मराठी (भाषा)", None, "मराठी (भाषा)", "मराठी (भाषा"),
    ("keep_abbreviation_dots", "U.S.", None, "U.S.", "U.S"),
    ("danda_keeps_dots", "प्रसिद्ध.", "यह एक वाक्य है। दूसरा वाक्य।", "प्रसिद्ध.", "प्रसिद्ध"),
])
def test_each_cleaning_step_switched_off_changes_what_it_should(step, raw, context, cleaned, without):
    assert clean_answer(raw, context) == clean_answer(raw, context, ALL_STEPS) == cleaned
    assert clean_answer(raw, context, dataclasses.replace(ALL_STEPS, **{step: False})) == without


QA_CASES = [  # context, the span the scores point at, the truth
    ("यह भारत। वह", "भारत।", "भारत"),
    ("कहा (1983) था", "(1983)", "1983"),
    ("from the U.S. now", "U.S.", "U.S."),
]


def qa_case():
    ids = [f"q{i}" for i in range(len(QA_CASES))]
    starts, ends = [], []
    for context, span, _ in QA_CASES:
        start, end = np.full(len(context), -20.0), np.full(len(context), -20.0)
        first = context.index(span)
        start[first] = end[first + len(span) - 1] = 0.0
        starts.append(start)
        ends.append(end)
    examples = pd.DataFrame({"id": ids, "context": [c for c, _, _ in QA_CASES],
                             "answer_text": [t for _, _, t in QA_CASES]})
    return examples, char_scores(ids, starts, ends)


def test_qa_rules_are_the_cleaning_steps_that_are_on_and_the_table_shows_what_each_is_worth():
    task = get_task(load_config(None))
    assert task.postprocess_rules() == {name: f"qa.decode.postprocess.{name}=false" for name in QA_RULES}
    examples, scores = qa_case()
    assert task.decode(examples, scores)["prediction"].tolist() == ["भारत", "1983", "U.S."]
    no_punctuation = get_task(with_overrides(task.cfg, ["qa.decode.postprocess.strip_punctuation=false"]))
    assert no_punctuation.decode(examples, scores)["prediction"].tolist() == ["भारत।", "1983", "U.S."]
    assert task.metric(examples, scores) == 1.0
    report = ablation_report(task, examples, scores, 1.0)
    assert report.splitlines()[0] == ("post-processing rules checked on the out-of-fold blend (jaccard, higher is "
                                      "better): 1.0000 with all of them on")
    rows = rows_of(report)
    assert list(rows) == QA_RULES
    for rule in ("strip_punctuation", "strip_enclosing_pairs", "keep_abbreviation_dots"):
        assert rows[rule] == (pytest.approx(2 / 3, abs=1e-4), pytest.approx(-1 / 3, abs=1e-4), "helps")
    for rule in ("strip_whitespace", "keep_paired_brackets", "danda_keeps_dots"):
        assert rows[rule] == (1.0, 0.0, "no effect on these rows")
    # A step already off is no rule to remove.
    fewer = get_task(with_overrides(task.cfg, ["qa.decode.postprocess.danda_keeps_dots=false"]))
    assert list(fewer.postprocess_rules()) == QA_RULES[:-1]


def spans_task(**decode):
    return get_task(from_dict({"task": "spans", "data": {"train_csv": "unused.csv"},
                               "spans": {"classes": ["Claim", "Lead"], "decode": decode}}))


def test_spans_rules_are_each_classes_length_and_probability_floors_and_switching_one_off_keeps_its_spans():
    task = spans_task(min_words=2, class_rules=["Lead:1:0.8"])
    rules = task.postprocess_rules()
    assert rules == {"Claim min_words 2": 'spans.decode.class_rules=["Claim:1:0.0", "Lead:1:0.8"]',
                     "Lead min_mean_prob 0.8": 'spans.decode.class_rules=["Claim:2:0.0", "Lead:1:0.0"]'}
    assert spans_task().postprocess_rules() == {}  # the defaults keep every span
    # A one-word Claim (false), an unsure Lead (true) and a two-word Claim (true).
    tags = [["B-Claim", "O", "B-Lead", "I-Lead", "O", "B-Claim", "I-Claim"]]
    scores = word_scores(["doc"], tags, task.channels, [[0.9, 0.9, 0.5, 0.5, 0.9, 0.9, 0.9]])
    examples = pd.DataFrame({"id": ["doc"], "text": ["a b c d e f g"], "spans": [[("Lead", 2, 3), ("Claim", 5, 6)]]})

    def spans(t):
        return [(r[2], r.predictionstring) for r in t.decode(examples, scores).itertuples()]

    assert spans(task) == [("Claim", "5 6")]
    ablated = {rule: get_task(with_overrides(task.cfg, [switch])) for rule, switch in rules.items()}
    assert spans(ablated["Claim min_words 2"]) == [("Claim", "0"), ("Claim", "5 6")]
    assert spans(ablated["Lead min_mean_prob 0.8"]) == [("Lead", "2 3"), ("Claim", "5 6")]
    rows = rows_of(ablation_report(task, examples, scores, task.metric(examples, scores)))
    assert task.metric(examples, scores) == 0.5  # Claim found, Lead missed
    assert rows == {"Claim min_words 2": (pytest.approx(1 / 3, abs=1e-4), pytest.approx(-1 / 6, abs=1e-4), "helps"),
                    "Lead min_mean_prob 0.8": (1.0, 0.5, "HURTS: switch it off with --set "
                                               "'spans.decode.class_rules=[\"Claim:2:0.0\", \"Lead:1:0.0\"]'")}
    # The switch is valid YAML for --set: the ablated rules are read back as given.
    assert ablated["Claim min_words 2"].settings.decode.class_rules == json.loads(
        rules["Claim min_words 2"].partition("=")[2])


def test_regression_rule_is_the_cut_points_when_set_and_classification_has_none(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "text": "x", "target": ["1", "2", "3", "4", "6"]}).to_csv(
        path, index=False)

    def regress(**section):
        return get_task(from_dict({"task": "regress", "data": {"train_csv": str(path)}, "regress": section}))

    task = regress(metric="qwk", grades=[1, 2, 3, 4, 6], thresholds=[[1.2, 2.5, 3.5, 5.0]])
    assert task.postprocess_rules() == {"thresholds": "regress.thresholds=null"}
    scores = Scores.from_lists(["a", "b"], [np.array([[1.3]]), np.array([[5.2]])], "example", task.channels, VALUE)
    examples = task.read_train()
    midpoints = get_task(with_overrides(task.cfg, ["regress.thresholds=null"]))
    assert task.decode(examples, scores)["target"].tolist() == [2, 6]
    assert midpoints.decode(examples, scores)["target"].tolist() == [1, 6]  # midpoints 1.5 ... 5
    assert [(rule, value) for rule, _, value in rule_effects(task, examples, scores)] == [
        ("thresholds", midpoints.metric(examples, scores))]
    assert regress(metric="qwk").postprocess_rules() == {}  # midpoints already
    assert regress(metric="rmse", grades=[1, 2, 3, 4, 6], thresholds=[[1.2, 2.5, 3.5, 5.0]]).postprocess_rules() == {}
    classify = get_task(from_dict({"task": "classify", "data": {"train_csv": str(path)}}))
    assert classify.postprocess_rules() == {}
    assert ablation_report(classify, examples, scores, 0.0) is None  # nothing printed


def test_ensemble_prints_the_qa_table_and_says_what_it_wrote_once(trained_run):
    _, code, out, err = trained_run.stages[-1]
    assert code == 0, err[-3000:]
    table = out[out.index("post-processing rules checked on the out-of-fold blend (jaccard, higher is better): "):]
    cv = float(re.search(r"^CV Jaccard \(out-of-fold.*?\): ([\d.]+)", out, re.MULTILINE)[1])
    assert f"{cv:.4f} with all of them on" in table.splitlines()[0]
    assert list(rows_of(table)) == QA_RULES
    assert (out + err).count(f"wrote {trained_run.submission}") == 1
