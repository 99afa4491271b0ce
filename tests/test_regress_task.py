"""The regression task's parts: target scaling learnt from the fold's training rows only, predictions scaled back
and clipped, grades and thresholds for QWK, fold bins, submissions read back."""

import numpy as np
import pandas as pd
import pytest
import torch

from foldnlp.config import from_dict
from foldnlp.errors import InputError
from foldnlp.scores import VALUE, Scores
from foldnlp.tasks import get_task
from foldnlp.tasks.document import metrics
from foldnlp.tasks.regress.task import RAW

ESSAYS = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "text": ["x"] * 5, "target": ["1", "2", "3", "4", "6"],
                       "other": ["0.5", "0.5", "1.5", "1.5", "1.0"]})


def task_for(tmp_path, frame=ESSAYS, **section):
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return get_task(from_dict({"task": "regress", "data": {"train_csv": str(path)}, "regress": section}))


def test_scaling_and_range_come_from_the_folds_training_rows_only(tmp_path):
    task = task_for(tmp_path)
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples.iloc[:4])  # the held-out row e (6) must not count
    s = fitted.settings
    assert (s.target_mean, s.target_min, s.target_max) == ([2.5], [1.0], [4.0])
    assert s.target_std == pytest.approx([np.std([1, 2, 3, 4])])
    assert fitted.targets(examples.iloc[:4], "t")[:, 0] == pytest.approx((np.array([1, 2, 3, 4]) - 2.5) / 1.118034,
                                                                         rel=1e-5)


def test_predictions_are_scaled_back_averaged_over_windows_and_clipped(tmp_path):
    task = task_for(tmp_path)
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples.iloc[:4])
    std = fitted.settings.target_std[0]
    logits = np.array([[0.0], [2 / std], [10.0]])  # 2.5, 4.5, far above the range
    values = fitted.window_scores(np.array([0, 0, 1]), logits, 2)
    assert values[:, 0] == pytest.approx([3.5, 4.0])  # mean of 2.5 and 4.5; 2.5 + 10 · std clipped to 4
    unclipped = task_for(tmp_path, clip_to_train_range=False, scale_targets=False)
    unclipped = unclipped.with_training_data(examples, examples)
    assert unclipped.window_scores(np.array([0]), np.array([[9.0]]), 1)[0, 0] == 9.0


def test_constant_targets_are_refused(tmp_path):
    task = task_for(tmp_path, ESSAYS.assign(target="3"))
    with pytest.raises(InputError, match=r"target\(s\) \['target'\] are constant"):
        task.with_training_data(task.read_train(), task.read_train())


def test_non_numeric_targets_are_named_with_their_rows(tmp_path):
    with pytest.raises(InputError, match=r"column 'target' must hold finite numbers.*row 2 \(id b\)"):
        task_for(tmp_path, ESSAYS.assign(target=["1", "two", "3", "4", "5"])).read_train()


def test_loss_is_mse_or_smooth_l1_on_the_scaled_targets(tmp_path):
    prediction, target = torch.tensor([[0.0, 1.0], [3.0, 0.5]]), torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    mse = task_for(tmp_path, label_columns=["target", "other"])
    assert mse.loss({"logits": prediction}, {"labels": target}).item() == pytest.approx((0.25 + 9 + 0.25) / 4)
    huber = task_for(tmp_path, loss="smooth_l1")
    # 0.5 · d² below 1, |d| - 0.5 above
    assert huber.loss({"logits": prediction}, {"labels": target}).item() == pytest.approx(
        (0.125 + 0 + 2.5 + 0.125) / 4)


def test_metrics_rmse_and_mcrmse(tmp_path):
    task = task_for(tmp_path, label_columns=["target", "other"], metric="mcrmse")
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples)
    truth = np.array([[1, 0.5], [2, 0.5], [3, 1.5], [4, 1.5], [6, 1.0]])
    predicted = truth + np.array([[1, 0], [1, 0], [1, 0], [1, 0], [1, 0.5]])
    scores = Scores.from_lists(examples["id"], list(predicted[:, None, :]), "example", fitted.channels, VALUE)
    predictions = fitted.decode(examples, scores)
    assert fitted.score(examples, predictions) == pytest.approx((1.0 + np.sqrt(0.25 / 5)) / 2, rel=1e-6)


def graded_task(tmp_path, **section):
    task = task_for(tmp_path, metric="qwk", **section)
    examples = task.read_train()
    return task.with_training_data(examples, examples), examples


def test_qwk_grades_are_the_training_values_and_decoding_rounds_to_them_as_integers(tmp_path):
    task, examples = graded_task(tmp_path)
    assert task.settings.grades == [1.0, 2.0, 3.0, 4.0, 6.0]
    scores = Scores.from_lists(examples["id"], [np.array([[v]]) for v in (1.2, 2.6, 3.4, 5.1, 4.9)], "example",
                               task.channels, VALUE)
    predictions = task.decode(examples, scores)
    assert predictions["target"].tolist() == [1, 3, 3, 6, 4]  # midpoints: 1.5, 2.5, 3.5, 5
    assert predictions["target"].dtype == np.int64
    assert predictions[RAW + "target"].tolist() == pytest.approx([1.2, 2.6, 3.4, 5.1, 4.9])


def test_thresholds_fit_on_out_of_fold_values_report_the_honest_gain_and_decode_the_test(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    truth = rng.integers(1, 7, size=n)
    frame = pd.DataFrame({"id": [f"e{i}" for i in range(n)], "text": "x", "target": truth.astype(str)})
    task, examples = graded_task(tmp_path, frame=frame)
    compressed = 0.5 * truth + 1.8 + rng.normal(0, 0.3, size=n)  # predictions pulled to the middle
    oof = Scores.from_lists(examples["id"], [np.array([[v]]) for v in compressed], "example", task.channels, VALUE)
    folds = pd.Series(np.arange(n) % 3, index=examples["id"])
    fit = task.fit_decoding(examples, oof, folds)
    cut = fit.settings["regress.thresholds"][0]
    assert cut == sorted(cut) and len(cut) == 5
    before = task.score(examples, task.decode(examples, oof))
    after = fit.task.score(examples, fit.task.decode(examples, oof))
    honest = metrics.crossfit_qwk(truth.astype(float), compressed, folds.to_numpy(), np.arange(1.0, 7.0))
    assert before < honest <= after
    assert f"{before:.4f} with midpoints → {after:.4f}" in fit.report and f"{honest:.4f} when each fold" in fit.report
    assert fit.task.settings.thresholds == [cut]


def test_nothing_is_fit_for_rmse(tmp_path):
    task = task_for(tmp_path)
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples)
    oof = Scores.from_lists(examples["id"], [np.array([[1.0]])] * 5, "example", fitted.channels, VALUE)
    assert fitted.fit_decoding(examples, oof, pd.Series(0, index=examples["id"])) is None


def test_fold_strata_are_quantile_bins_of_the_mean_target(tmp_path):
    frame = pd.DataFrame({"id": [f"e{i}" for i in range(100)], "text": "x",
                          "target": [str(v) for v in np.linspace(0, 1, 100)]})
    task = task_for(tmp_path, frame, target_bins=4)
    strata = task.fold_table(task.read_train())["stratum"]
    assert strata.value_counts().sort_index().tolist() == [25, 25, 25, 25]
    assert strata.iloc[0] == "0" and strata.iloc[-1] == "3"


def test_a_submission_read_back_scores_as_its_predictions(tmp_path):
    task = task_for(tmp_path)
    examples = task.read_train()
    fitted = task.with_training_data(examples, examples)
    scores = Scores.from_lists(examples["id"], [np.array([[v]]) for v in (1.5, 2, 2.5, 4, 5)], "example",
                               fitted.channels, VALUE)
    predictions = fitted.decode(examples, scores)
    path = tmp_path / "submission.csv"
    fitted.submission(examples[["id"]].iloc[::-1], predictions).to_csv(path, index=False)
    assert pd.read_csv(path)["id"].tolist() == ["e", "d", "c", "b", "a"]
    assert fitted.score(examples, fitted.read_submission(path)) == pytest.approx(
        fitted.score(examples, predictions))


@pytest.mark.parametrize("section, message", [
    ({"metric": "mae"}, "regress.metric: 'mae' is not one of"),
    ({"loss": "l1"}, "regress.loss: 'l1' is not one of"),
    ({"thresholds": [[1.5]]}, "need regress.grades"),
    ({"grades": [1, 2, 3], "thresholds": [[2.5, 1.5]]}, "2 increasing cut points"),
    ({"target_mean": [1.0, 2.0]}, "2 values for 1 targets"),
])
def test_settings_that_cannot_work_are_refused(section, message):
    with pytest.raises(InputError, match=message):
        from_dict({"task": "regress", "regress": section})


def test_a_grade_read_back_with_float_noise_is_still_that_grade_and_an_unknown_one_is_named(tmp_path):
    task, examples = graded_task(tmp_path)
    path = tmp_path / "submission.csv"
    pd.DataFrame({"id": list("abcde"), "target": ["1", "2.0000001", "3", "4", "6"]}).to_csv(path, index=False)
    assert task.score(examples, task.read_submission(path)) == pytest.approx(1.0)
    pd.DataFrame({"id": list("abcde"), "target": ["1", "2.5", "3", "4", "6"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"grades 2.5 are not among the training grades \[1.0, 2.0, 3.0, 4.0, 6.0\]"):
        task.score(examples, task.read_submission(path))
