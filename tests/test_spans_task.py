"""The span-segmentation task's parts, from a config dict: the layout of the training file, the competition folder's
defaults, classes learnt from the data, fold strata, the loss, decoding into the long submission format and back,
and per-class decoding rules."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from foldnlp.batching import IGNORE_INDEX
from foldnlp.config import from_dict
from foldnlp.errors import InputError
from foldnlp.steps.infer import sample_submission_path
from foldnlp.tasks import get_task
from foldnlp.tasks.spans import data
from foldnlp.tasks.spans.data import bio_channels
from helpers import run_cli
from spans import BIO_TEST, BIO_TRAIN, CLASSES, FEEDBACK_TEST, word_scores, write_feedback_layout


def task_of(data: dict, **section):
    return get_task(from_dict({"task": "spans", "data": data, "spans": section}))


@pytest.fixture
def layout(tmp_path):
    return write_feedback_layout(tmp_path / "competition")


def trained(layout, **section):
    """The task as train_fold sees it: classes learnt from the training essays."""
    task = task_of({"train_csv": str(layout["train"])}, **section)
    examples = task.read_train()
    return task.with_training_data(examples, examples), examples


def test_the_format_follows_the_training_files_name_unless_set(layout):
    bio = task_of({"train_csv": str(BIO_TRAIN)}, sentences_per_document=4)
    assert bio._layout() == "bio"
    assert bio.read_train()["id"].iloc[0] == "Hindi-train-300-00000"
    feedback = task_of({"train_csv": str(layout["train"])})
    assert feedback._layout() == "feedback"
    assert len(feedback.read_train()) == 12 and feedback.read_train()["id"].iloc[0] == "E000TRAIN"
    assert task_of({"train_csv": "data/ner.csv"}, format="bio")._layout() == "bio"
    assert task_of({"train_csv": "data/essays.txt"}, format="feedback")._layout() == "feedback"
    for name in ("x.conll", "x.tsv", "x.BIO"):
        assert task_of({"train_csv": name})._layout() == "bio"
    with pytest.raises(InputError, match="spans.format: 'conll' is not one of auto, feedback, bio"):
        task_of({"train_csv": str(BIO_TRAIN)}, format="conll")


def test_a_feedback_train_csv_alone_finds_test_and_sample_beside_it(layout):
    cfg = from_dict({"task": "spans", "data": {"train_csv": str(layout["train"])}})
    assert cfg.data.test_csv == str(layout["test"])
    sample = sample_submission_path(cfg.data.test_csv, cfg.data.sample_submission_csv)
    assert sample == layout["sample"]
    test, read_sample = get_task(cfg).read_test(cfg.data.test_csv, sample)
    assert test["id"].tolist() == ["T000TEST", "T001TEST", "T002TEST"] and test["text"].str.len().min() > 50
    assert read_sample.columns.tolist() == ["id", "class", "predictionstring"]
    assert cfg.folds.stratify_by == "stratum" and cfg.folds.group_by is None
    # what the config says stays; a BIO file has no such layout
    given = from_dict({"task": "spans", "data": {"train_csv": str(layout["train"]), "test_csv": "elsewhere"}})
    assert given.data.test_csv == "elsewhere"
    assert from_dict({"task": "spans", "data": {"train_csv": str(BIO_TRAIN)}}).data.test_csv == "input/test.csv"
    overridden = from_dict({"task": "spans"}, [f"data.train_csv={layout['train']}"])  # --set counts as set
    assert overridden.data.test_csv == str(layout["test"])


def test_a_feedback_test_must_be_a_folder_and_a_bio_test_is_a_file(layout):
    task = task_of({"train_csv": str(layout["train"])})
    with pytest.raises(InputError, match="is a folder of <id>.txt essays"):
        task.read_test(layout["sample"], None)
    test, sample = task.read_test(FEEDBACK_TEST, FEEDBACK_TEST / "sample_submission.csv")
    assert len(test) == 5 and len(sample) == 5  # the sample's own file in the folder is no essay
    bio = task_of({"train_csv": str(BIO_TRAIN)}, sentences_per_document=4)
    test, _ = bio.read_test(BIO_TEST, None)
    assert test.columns.tolist() == ["id", "text"] and len(test) == 25


def test_classes_are_learnt_from_the_training_essays_and_saved_in_the_config(layout):
    task = task_of({"train_csv": str(layout["train"])})
    assert task.settings.classes is None and task.channels is None
    fitted, _ = trained(layout)
    assert fitted.settings.classes == list(CLASSES)  # train_fold saves this config beside the weights
    assert fitted.channels == bio_channels(CLASSES)
    assert fitted.channels == ("O", "B-Counter", "I-Counter", "B-Support", "I-Support", "B-Thesis", "I-Thesis")
    reordered, _ = trained(layout, classes=["Thesis", "Support", "Counter"])
    assert reordered.channels[1] == "B-Thesis"  # the config's order stands when it names the same classes


def test_classes_that_disagree_with_the_data_are_refused(layout):
    with pytest.raises(InputError, match=r"spans.classes \['Thesis', 'Support'\] differ from the classes of .*"
                                         r"train.csv \(\['Counter', 'Support', 'Thesis'\]\)"):
        trained(layout, classes=["Thesis", "Support"])
    with pytest.raises(InputError, match="differ from the classes"):
        trained(layout, classes=[*CLASSES, "Lead"])


def test_fold_strata_are_each_documents_span_counts_per_class(layout):
    task, examples = trained(layout)
    table = task.fold_table(examples)
    assert len(table) == len(examples)
    for spans, stratum in zip(examples["spans"], table["stratum"]):
        counts = Counter(cls for cls, _, _ in spans)
        # ':1+' says the class is present; ':2+', ':4+' ... how many spans it has, in doubling steps.
        assert {label.split(":")[0] for label in stratum} == set(counts)
        for cls, n in counts.items():
            assert {label for label in stratum if label.startswith(f"{cls}:")} == {
                f"{cls}:{t}+" for t in (1, 2, 4, 8, 16) if n >= t}
    no_spans = examples.assign(spans=[[]] * len(examples))
    assert set(task.fold_table(no_spans)["stratum"]) == {()}


def test_span_count_labels_double_their_thresholds():
    spans = [[("Claim", 0, 1)] * 3 + [("Lead", 2, 3)], [("Claim", 0, 0)] * 8, [], [("Lead", 0, 0)] * 2]
    assert data.span_count_labels(spans) == [("Claim:1+", "Claim:2+", "Lead:1+"),
                                             ("Claim:1+", "Claim:2+", "Claim:4+", "Claim:8+"), (),
                                             ("Lead:1+", "Lead:2+")]


def test_the_loss_ignores_ignore_index(layout):
    task, _ = trained(layout)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, 0, 5, 6, IGNORE_INDEX], [IGNORE_INDEX, 3, IGNORE_INDEX, 0, IGNORE_INDEX]])
    loss = task.loss({"logits": logits}, {"labels": labels})
    keep = labels != IGNORE_INDEX
    assert loss.item() == pytest.approx(F.cross_entropy(logits[keep], labels[keep]).item())
    shifted = logits.clone()
    shifted[~keep] = 100 * torch.randn(int((~keep).sum()), 7)
    assert task.loss({"logits": shifted}, {"labels": labels}).item() == pytest.approx(loss.item())


TAGS = [["O", "B-Thesis", "I-Thesis", "I-Thesis", "O", "B-Support", "O"],
        ["B-Support", "I-Support", "O", "B-Thesis", "I-Thesis"],
        ["O", "B-Counter", "O"]]


def test_decoded_spans_make_a_long_submission_of_every_test_document(layout):
    task, _ = trained(layout)
    test, sample = task.read_test(layout["test"], layout["sample"])
    scores = word_scores(test["id"], TAGS, task.channels)
    predictions = task.decode(test, scores)
    assert predictions.columns.tolist() == ["id", "class", "predictionstring", "score"]
    submission = task.submission(sample.head(1), predictions)  # a sample listing one essay only
    assert submission.columns.tolist() == ["id", "class", "predictionstring"]
    assert submission.values.tolist() == [["T000TEST", "Thesis", "1 2 3"], ["T000TEST", "Support", "5"],
                                          ["T001TEST", "Support", "0 1"], ["T001TEST", "Thesis", "3 4"],
                                          ["T002TEST", "Counter", "1"]]
    assert predictions["score"].to_numpy() == pytest.approx(0.9 + 0.1 / 6, rel=1e-4)  # P(B-X) + P(I-X), float32


def test_a_submission_read_back_scores_as_the_predictions(layout, tmp_path):
    task, examples = trained(layout)
    truth_tags = []
    for text, spans in zip(examples["text"], examples["spans"]):
        tags = ["O"] * len(text.split())
        for cls, a, b in spans:
            tags[a:b + 1] = [f"B-{cls}"] + [f"I-{cls}"] * (b - a)
        truth_tags.append(tags)
    rng = np.random.default_rng(0)
    noisy = [[t if rng.random() < 0.8 else rng.choice(task.channels) for t in tags] for tags in truth_tags]
    predictions = task.decode(examples, word_scores(examples["id"], noisy, task.channels))
    expected = task.score(examples, predictions)
    assert 0 < expected < 1
    assert task.score(examples, task.decode(examples, word_scores(examples["id"], truth_tags, task.channels))) == 1
    path = tmp_path / "submission.csv"
    task.submission(None, predictions).to_csv(path, index=False)
    read = task.read_submission(path)
    assert read.columns.tolist() == ["id", "class", "predictionstring"]
    assert task.score(examples, read) == pytest.approx(expected)
    with_truth = task.with_truth(examples, predictions)
    assert set(with_truth["source"]) == {"predicted", "true"}
    assert (with_truth["source"] == "true").sum() == sum(len(s) for s in examples["spans"])


def test_class_rules_override_the_default_rule(layout):
    test = task_of({"train_csv": str(layout["train"])}).read_test(layout["test"], None)[0]
    tags = [["B-Thesis", "I-Thesis", "O", "B-Support", "O", "B-Counter", "I-Counter", "I-Counter"],
            ["B-Thesis", "I-Thesis", "I-Thesis", "O", "B-Support", "I-Support"], ["O"]]

    def kept(**decode):
        task, _ = trained(layout, decode=decode)
        predictions = task.decode(test, word_scores(test["id"], tags, task.channels))
        return [(r.id, r[2], r.predictionstring) for r in predictions.itertuples()]

    everything = kept()
    assert len(everything) == 5
    assert kept(class_rules=["Thesis:3:0.0"]) == [s for s in everything if s != ("T000TEST", "Thesis", "0 1")]
    assert kept(min_words=2, class_rules=["Support:1:0"]) == [
        ("T000TEST", "Thesis", "0 1"), ("T000TEST", "Support", "3"), ("T000TEST", "Counter", "5 6 7"),
        ("T001TEST", "Thesis", "0 1 2"), ("T001TEST", "Support", "4 5")]
    assert kept(min_words=2, class_rules=["Support:1:0"]) != kept(min_words=2)
    assert kept(min_mean_prob=0.95) == [] and kept(min_mean_prob=0.95, class_rules=["Counter:1:0.5"]) == [
        ("T000TEST", "Counter", "5 6 7")]


@pytest.mark.parametrize("rule", ["Thesis:0:0.5", "Thesis:3", "Thesis:3:1.5", "Thesis:x:0.5", "Thesis"])
def test_a_bad_class_rule_is_refused_in_one_line(rule, layout):
    with pytest.raises(InputError) as refused:
        trained(layout, decode={"class_rules": [rule]})
    message = str(refused.value)
    assert "\n" not in message and repr(rule) in message and "Class:min_words:min_mean_prob" in message


def test_a_rule_for_a_class_the_data_lack_is_refused_at_decoding(layout):
    task, _ = trained(layout, decode={"class_rules": ["Lead:2:0.5"]})
    test = task.read_test(layout["test"], None)[0]
    with pytest.raises(InputError, match="decoding rules name class.* Lead that the channels lack") as refused:
        task.decode(test, word_scores(test["id"], [["O"] * 3] * 3, task.channels))
    assert "\n" not in str(refused.value)


def test_a_bad_class_rule_stops_a_cli_with_status_2_in_one_line(layout, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("task: spans\n")
    code, _, err = run_cli("make_folds.py", "--config", config, "--set", f"data.train_csv={layout['train']}",
                           "--set", f"folds.folds_dir={tmp_path / 'folds'}", "--set",
                           "spans.decode.class_rules=[Thesis:0:1]", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: spans.decode.class_rules entry 'Thesis:0:1'")
    assert not (tmp_path / "folds").exists()


def test_bio_documents_hold_their_sentences_spans(tmp_path):
    task = task_of({"train_csv": str(BIO_TRAIN)}, sentences_per_document=4)
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples)
    assert fitted.settings.classes == ["NEAR", "NEL", "NEN", "NEO", "NEP", "NETI"]
    assert len(examples) == 75 and fitted.score_rows(examples).tolist() == [len(t.split()) for t in examples["text"]]
    truth = fitted.truth(examples)
    assert len(truth) == sum(len(s) for s in examples["spans"]) and fitted.score(examples, truth) == 1.0
    assert task.read_answers(BIO_TEST)["spans"].map(len).sum() > 0
    pd.testing.assert_frame_equal(task.read_answers(BIO_TEST).drop(columns="spans"), task.read_test(BIO_TEST, None)[0])
