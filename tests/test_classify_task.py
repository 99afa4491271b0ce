"""The classification task's parts: classes and weights learnt from the data, targets, window combination, loss,
decoding, submissions in each format and read back, and fold strata."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from foldnlp.config import from_dict
from foldnlp.errors import InputError
from foldnlp.scores import Scores
from foldnlp.tasks import get_task
from foldnlp.tasks.classify.task import PROB


def task_for(tmp_path, frame: pd.DataFrame, **section):
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return get_task(from_dict({"task": "classify", "data": {"train_csv": str(path)}, "classify": section}))


def trained(tmp_path, frame, **section):
    """The task as train_fold sees it: classes (and weights) filled in from the data."""
    task = task_for(tmp_path, frame, **section)
    examples = task.read_train()
    return task.with_training_data(examples, examples), examples


REVIEWS = pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["good", "bad", "fine", "meh"],
                        "label": ["10", "2", "2", "1"]})


def test_classes_are_learnt_in_numeric_order_and_saved_in_the_config(tmp_path):
    task, _ = trained(tmp_path, REVIEWS)
    assert task.classes == ("1", "2", "10")
    assert task.cfg.settings.classes == ["1", "2", "10"]  # train_fold saves this config beside the weights


def test_balanced_class_weights_come_from_the_training_rows_given(tmp_path):
    task = task_for(tmp_path, REVIEWS, balance_classes=True)
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples.iloc[:3])  # training part: 10, 2, 2
    # n / (C · n_c) with n = 3, C = 3: class 1 is absent (counted as 1 so its weight stays finite)
    assert fitted.settings.class_weights == pytest.approx([1.0, 0.5, 1.0])


def test_one_class_only_and_classes_that_disagree_with_the_data_are_refused(tmp_path):
    with pytest.raises(InputError, match="one class only"):
        trained(tmp_path, REVIEWS.assign(label="x"))
    with pytest.raises(InputError, match="label.* 10 that are not training classes"):
        trained(tmp_path, REVIEWS, classes=["1", "2"])
    with pytest.raises(InputError, match="differ from the labels"):
        trained(tmp_path, REVIEWS, classes=["1", "2", "10", "99"])


def test_a_label_outside_the_training_classes_is_named_with_its_row(tmp_path):
    task, examples = trained(tmp_path, REVIEWS)
    with pytest.raises(InputError, match=r"label\(s\) 7 that are not training classes.*row 2 \(id b\)"):
        task.targets(examples.assign(label=["1", "7", "2", "2"]), "answers.csv")


def test_blank_labels_and_missing_columns_are_named(tmp_path):
    with pytest.raises(InputError, match=r"column 'label' is empty in 1 row\(s\): row 3 \(id c\)"):
        task_for(tmp_path, REVIEWS.assign(label=["1", "2", "", "1"])).read_train()
    with pytest.raises(InputError, match="missing required column.*review"):
        task_for(tmp_path, REVIEWS, text_column="review").read_train()


def test_windows_combine_by_mean_logits_or_mean_probabilities(tmp_path):
    logits = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    index = np.array([0, 0, 1])
    binary = REVIEWS.assign(label=["0", "1", "0", "1"])
    by_logits, _ = trained(tmp_path, binary)
    mean = np.exp(by_logits.window_scores(index, logits, 2))
    assert mean[0] == pytest.approx([1 / (1 + math.exp(-1)), 1 - 1 / (1 + math.exp(-1))])  # softmax of [1, 0]
    by_probs, _ = trained(tmp_path, binary, combine_windows="mean_probs")
    p = 1 / (1 + math.exp(-2))
    assert np.exp(by_probs.window_scores(index, logits, 2))[0] == pytest.approx([(p + 0.5) / 2, (1 - p + 0.5) / 2])
    assert np.exp(by_probs.window_scores(index, logits, 2)).sum(1) == pytest.approx([1, 1])


def test_multi_label_scores_are_each_labels_own_probability(tmp_path):
    frame = REVIEWS.assign(action=["1", "0", "1", "0"], comedy=["0", "0", "1", "1"])
    task, _ = trained(tmp_path, frame, multi_label=True, label_columns=["action", "comedy"], metric="roc_auc")
    assert task.classes == ("action", "comedy")
    scores = np.exp(task.window_scores(np.array([0]), np.array([[0.0, 2.0]]), 1))
    assert scores[0] == pytest.approx([0.5, 1 / (1 + math.exp(-2))])


def test_loss_is_cross_entropy_with_label_smoothing_and_class_weights(tmp_path):
    task, _ = trained(tmp_path, REVIEWS, label_smoothing=0.1, class_weights=[1.0, 2.0, 0.5])
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, 2.0, 0.5]),
                                                 label_smoothing=0.1)
    assert task.loss({"logits": logits}, {"labels": labels}).item() == pytest.approx(expected.item())
    # by hand without weights: (1 - ε) · CE(true) + ε · mean CE over classes
    plain, _ = trained(tmp_path, REVIEWS, label_smoothing=0.1)
    log_p = torch.log_softmax(logits, 1)
    by_hand = (-(0.9 * log_p[[0, 1], [0, 1]] + 0.1 * log_p.mean(1))).mean()
    assert plain.loss({"logits": logits}, {"labels": labels}).item() == pytest.approx(by_hand.item())


def test_multi_label_loss_is_bce_against_smoothed_targets(tmp_path):
    frame = REVIEWS.assign(action=["1", "0", "1", "0"], comedy=["0", "0", "1", "1"])
    task, _ = trained(tmp_path, frame, multi_label=True, label_columns=["action", "comedy"], metric="macro_f1",
                      label_smoothing=0.2)
    logits, labels = torch.tensor([[0.5, -1.0]]), torch.tensor([[1.0, 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[0.9, 0.1]]))
    assert task.loss({"logits": logits}, {"labels": labels}).item() == pytest.approx(expected.item())


def scores_of(task, ids, probabilities):
    return Scores.from_lists(ids, [np.log(np.asarray([p])) for p in probabilities], "example", task.classes)


def test_decode_gives_the_class_and_every_probability(tmp_path):
    task, _ = trained(tmp_path, REVIEWS)
    predictions = task.decode(None, scores_of(task, ["a", "b"], [[0.2, 0.7, 0.1], [0.5, 0.2, 0.3]]))
    assert predictions["label"].tolist() == ["2", "1"]
    assert predictions[[PROB + c for c in ("1", "2", "10")]].to_numpy() == pytest.approx(
        np.array([[0.2, 0.7, 0.1], [0.5, 0.2, 0.3]]), abs=1e-3)


@pytest.mark.parametrize("section, columns, first_row", [
    ({}, ["id", "label"], ["a", "2"]),
    ({"metric": "log_loss"}, ["id", "1", "2", "10"], ["a", 0.2, 0.7, 0.1]),
    ({"submit": "probability"}, ["id", "1", "2", "10"], ["a", 0.2, 0.7, 0.1]),
])
def test_submission_holds_labels_or_probabilities(tmp_path, section, columns, first_row):
    task, examples = trained(tmp_path, REVIEWS, **section)
    predictions = task.decode(examples, scores_of(task, ["b", "a"], [[0.5, 0.2, 0.3], [0.2, 0.7, 0.1]]))
    sample = pd.DataFrame({"id": ["a", "b"], **{c: "0" for c in columns[1:]}})
    submission = task.submission(sample, predictions)
    assert submission.columns.tolist() == columns and submission["id"].tolist() == ["a", "b"]
    assert submission.iloc[0].tolist() == pytest.approx(first_row, abs=1e-3) if len(columns) > 2 else \
        submission.iloc[0].tolist() == first_row


def test_binary_probability_submission_is_the_positive_class_in_the_label_column(tmp_path):
    task, examples = trained(tmp_path, REVIEWS.assign(label=["neg", "pos", "neg", "pos"]), metric="roc_auc")
    predictions = task.decode(examples, scores_of(task, ["a", "b"], [[0.9, 0.1], [0.3, 0.7]]))
    submission = task.submission(pd.DataFrame({"id": ["a", "b"], "label": ["0", "0"]}), predictions)
    assert submission["label"].tolist() == pytest.approx([0.1, 0.7], abs=1e-3)


@pytest.mark.parametrize("section", [{}, {"metric": "roc_auc"}, {"metric": "log_loss", "submit": "probability"}])
def test_a_submission_read_back_scores_as_its_predictions(tmp_path, section):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(6)], "text": ["x"] * 6,
                          "label": ["neg", "pos", "neg", "pos", "mid", "mid"]})
    task, examples = trained(tmp_path, frame, **section)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=6)
    predictions = task.decode(examples, scores_of(task, frame["id"], probs))
    path = tmp_path / "submission.csv"
    task.submission(frame[["id"]], predictions).to_csv(path, index=False)
    if task.metric_name == "roc_auc":  # 3 classes, probabilities per class
        assert pd.read_csv(path).columns.tolist() == ["id", "mid", "neg", "pos"]
    assert task.score(examples, task.read_submission(path)) == pytest.approx(task.score(examples, predictions),
                                                                             abs=1e-3)


def test_a_submission_with_a_probability_outside_0_1_is_named(tmp_path):
    task, _ = trained(tmp_path, REVIEWS.assign(label=["neg", "pos", "neg", "pos"]), metric="roc_auc")
    path = tmp_path / "submission.csv"
    pd.DataFrame({"id": ["a", "b"], "label": ["0.5", "1.5"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"column 'label' must hold probabilities.*row 2 \(id b\)"):
        task.read_submission(path)


def test_fold_strata_are_the_label_or_the_tuple_of_labels(tmp_path):
    task, examples = trained(tmp_path, REVIEWS)
    assert task.fold_table(examples)["stratum"].tolist() == ["10", "2", "2", "1"]
    frame = REVIEWS.assign(action=["1", "0", "1", "0"], comedy=["0", "0", "1", "1"])
    multi, examples = trained(tmp_path, frame, multi_label=True, label_columns=["action", "comedy"],
                              metric="macro_f1")
    assert multi.fold_table(examples)["stratum"].tolist() == [("action",), (), ("action", "comedy"), ("comedy",)]


@pytest.mark.parametrize("section, message", [
    ({"metric": "f1"}, "classify.metric: 'f1' is not one of"),
    ({"multi_label": True, "label_columns": ["a", "b"]}, "accuracy does not apply to multi-label"),
    ({"label_columns": ["a", "b"]}, "single-label task reads one label column"),
    ({"truncation": "middle"}, "classify.truncation: 'middle' is not one of head, head_tail, windows"),
    ({"label_columns": ["text"]}, "must not include id or the text columns"),
])
def test_settings_that_cannot_work_are_refused(section, message):
    with pytest.raises(InputError, match=message):
        from_dict({"task": "classify", "classify": section})


@pytest.mark.parametrize("pooling, hidden", [("cls", 0), ("mean", 16)])
def test_the_model_learns_through_its_head_and_pooling(tmp_path, document_model_dir, pooling, hidden):
    """Eight reviews overfit in a few dozen steps: gradients reach the head and the backbone through the pooling,
    and the targets line up with their windows."""
    from foldnlp.batching import collate
    from foldnlp.config import ModelConfig
    from foldnlp.modeling import load_tokenizer

    frame = pd.DataFrame({"id": [f"r{i}" for i in range(8)], "text": [
        "superb film", "awful film", "the plot was superb", "boring and awful", "delightful scene",
        "dreadful script", "superb music", "boring actor"], "label": ["pos", "neg"] * 4})
    task, examples = trained(tmp_path, frame, pooling=pooling, head_hidden=hidden, head_dropout=0.0)
    tokenizer = load_tokenizer(str(document_model_dir))
    data = task.training_set(task.windows(tokenizer, examples, with_targets=True))
    assert data.targets["labels"].tolist() == [1, 0] * 4
    torch.manual_seed(0)
    model = task.load_model(str(document_model_dir), ModelConfig(dropout=0.0, freeze_word_embeddings=False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = collate(data, np.arange(8), tokenizer.pad_token_id)
    first = task.loss(model(batch["input_ids"], batch["attention_mask"]), batch).item()
    for _ in range(60):
        loss = task.loss(model(batch["input_ids"], batch["attention_mask"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 0.6 and loss.item() < 0.05
