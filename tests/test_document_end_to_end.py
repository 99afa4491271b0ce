"""Classification and regression through the real CLIs with a tiny model: make_folds → train_fold (both folds) →
infer → ensemble → score.py, for single-label, multi-label and graded_run-regression experiments."""

import json

import pandas as pd
import yaml

from documents import GENRES
from foldnlp import artifacts, test_outputs
from foldnlp.scores import VALUE
from helpers import latest_test_outputs, run_cli, sets


def test_single_label_run_keeps_classes_beside_the_weights_and_submits_labels(single_label_run):
    run = artifacts.RunPaths(single_label_run.root)
    for fold in (0, 1):
        beside = yaml.safe_load((run.model_dir(fold) / artifacts.CONFIG_BESIDE_WEIGHTS).read_text())
        assert beside["classify"]["classes"] == ["neg", "pos"]
        assert (run.model_dir(fold) / "head.safetensors").is_file()
        metrics = json.loads(run.metrics(fold).read_text())
        assert metrics["metric"] == "accuracy" and metrics["accuracy"] == max(h["accuracy"] for h in metrics["history"])
        oof = pd.read_csv(run.oof_predictions(fold), dtype=str)
        assert oof.columns.tolist() == ["id", "label", "prob_neg", "prob_pos", "true_label"]
    sample = pd.read_csv(single_label_run.test.with_name("sample_submission.csv"), dtype=str)
    submission = pd.read_csv(single_label_run.submission, dtype=str)
    assert submission.columns.tolist() == ["id", "label"] and submission["id"].tolist() == sample["id"].tolist()
    assert set(submission["label"]) <= {"neg", "pos"}
    report = single_label_run.stages[-1][2]
    assert "CV accuracy (out-of-fold, 40 documents, folds [0, 1])" in report and "other metrics: macro_f1" in report


def test_score_py_scores_the_submission_by_the_experiments_metric(single_label_run):
    code, out, err = run_cli("score.py", "--config", single_label_run.config, *sets(single_label_run.overrides),
                             single_label_run.submission, single_label_run.answers, "--quiet")
    assert code == 0, err[-2000:]
    submission = pd.read_csv(single_label_run.submission, dtype=str)
    truth = pd.read_csv(single_label_run.answers, dtype=str).set_index("id").loc[submission["id"], "label"]
    expected = (submission["label"].to_numpy() == truth.to_numpy()).mean()
    assert out.startswith(f"accuracy {expected:.4f} (higher is better)")


def test_test_time_windows_are_other_test_outputs_and_blend_with_the_trained_ones(single_label_run):
    code, out, err = run_cli("infer.py", "--run-dir", single_label_run.root, "--set", "classify.truncation=windows")
    assert code == 0, err[-2000:]
    record = latest_test_outputs(single_label_run.root)
    assert record.data["changed"] == ["classify.truncation: head_tail → windows"]
    assert record.data["window"]["classify.truncation"] == "windows"
    keys = [r.key for r in test_outputs.records(artifacts.RunPaths(single_label_run.root))]
    assert len(keys) == 2 and record.key in keys
    out_csv = single_label_run.tmp / "tta.csv"
    code, out, err = run_cli("ensemble.py", "--experiments", *[f"{single_label_run.root}@{k}" for k in keys],
                             "--out", out_csv)
    assert code == 0, err[-2000:]
    assert len(pd.read_csv(out_csv)) == 12


def test_multi_label_run_submits_each_labels_probability(multi_label_run):
    submission = pd.read_csv(multi_label_run.submission)
    assert submission.columns.tolist() == ["id", *GENRES]
    assert ((submission[list(GENRES)] >= 0) & (submission[list(GENRES)] <= 1)).all().all()
    assert "CV roc_auc" in multi_label_run.stages[-1][2]
    folds = pd.read_csv(next((multi_label_run.tmp / "folds").glob("*.csv")))
    assert sorted(folds["fold"].unique()) == [0, 1]


def test_graded_regression_fits_thresholds_on_oof_and_writes_them_beside_the_submission(graded_run):
    run = artifacts.RunPaths(graded_run.root)
    oof = artifacts.load_scores(run.oof_scores(0))
    assert (oof.unit, oof.channels, oof.kind) == ("example", ("grade",), VALUE)
    beside = yaml.safe_load((run.model_dir(0) / artifacts.CONFIG_BESIDE_WEIGHTS).read_text())["regress"]
    assert beside["grades"] == [1.0, 2.0, 3.0, 4.0, 5.0] and len(beside["target_mean"]) == 1
    decoding = json.loads(graded_run.submission.with_suffix(".decoding.json").read_text())
    cut = decoding["regress.thresholds"][0]
    assert len(cut) == 4 and cut == sorted(cut)
    report = graded_run.stages[-1][2]
    assert "with midpoints →" in report and "when each fold is cut by points fit on the other folds" in report
    submission = pd.read_csv(graded_run.submission, dtype=str)
    assert submission.columns.tolist() == ["id", "grade"] and set(submission["grade"]) <= {"1", "2", "3", "4", "5"}


def test_multi_target_regression_keeps_the_lowest_mcrmse_and_never_splits_an_author(multi_target_run):
    run = artifacts.RunPaths(multi_target_run.root)
    folds = pd.read_csv(next((multi_target_run.tmp / "folds").glob("stratum-author-*.csv")), dtype=str)
    train = pd.read_csv(multi_target_run.tmp / "data" / "train.csv", dtype=str)
    authors = train.set_index("id").loc[folds["id"], "author"].to_numpy()
    assert (pd.DataFrame({"author": authors, "fold": folds["fold"]}).groupby("author")["fold"].nunique() == 1).all()
    for fold in (0, 1):
        metrics = json.loads(run.metrics(fold).read_text())
        assert metrics["higher_is_better"] is False
        assert metrics["mcrmse"] == min(h["mcrmse"] for h in metrics["history"])
    submission = pd.read_csv(multi_target_run.submission)
    assert submission.columns.tolist() == ["id", "grade", "score"]
    targets = pd.read_csv(multi_target_run.tmp / "data" / "train.csv")[["grade", "score"]]
    predicted = submission[["grade", "score"]]
    assert ((predicted >= targets.min() - 1e-6) & (predicted <= targets.max() + 1e-6)).all().all()  # clipped
    assert "RMSE per target: grade:" in multi_target_run.stages[-1][2]


def test_score_py_scores_graded_essays_with_the_users_own_config(graded_run):
    """The experiment's config holds no grades (training fills them in): score.py reads them off the training file."""
    code, out, err = run_cli("score.py", "--config", graded_run.config, *sets(graded_run.overrides),
                             graded_run.submission, graded_run.answers, "--quiet")
    assert code == 0, err[-2000:]
    assert out.startswith("qwk ") and "(higher is better)" in out and "(12 ids)" in out
