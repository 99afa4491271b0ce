"""The whole week through the real CLIs: make_folds → train_fold (every fold) → infer → ensemble, with a tiny model
(the session's shared trained run, see conftest.trained_run)."""

import json
import math

import numpy as np
import pandas as pd
import yaml

from foldnlp import artifacts
from helpers import SAMPLE_CSV, TEST_CSV, latest_test_outputs, run_cli, sets


def test_every_stage_succeeds(trained_run):
    for stage, code, out, err in trained_run.stages:
        assert code == 0, f"{stage}\n{out[-2000:]}\n{err[-4000:]}"


def test_training_keeps_best_checkpoint_and_out_of_fold_outputs(trained_run):
    run = artifacts.RunPaths(trained_run.root)
    assert run.trained_folds() == [0, 1]
    folds = pd.read_csv(next((trained_run.tmp / "folds").glob("*.csv")), dtype=str)
    for fold in (0, 1):
        assert (run.model_dir(fold) / "model.safetensors").is_file()
        assert not list(run.model_dir(fold).glob("*.bin"))
        beside = yaml.safe_load((run.model_dir(fold) / artifacts.CONFIG_BESIDE_WEIGHTS).read_text())
        assert beside["task"] == "qa" and "external_squad" in beside["qa"]  # the task's section sits by the weights
        metrics = json.loads(run.metrics(fold).read_text())
        assert metrics["metric"] == "jaccard" and metrics["higher_is_better"] is True
        assert len(metrics["history"]) >= 2 and metrics["jaccard"] == max(h["jaccard"] for h in metrics["history"])
        oof = artifacts.load_scores(run.oof_scores(fold))
        assert (oof.unit, oof.channels) == ("char", ("start", "end"))
        assert set(oof.ids) == set(folds.loc[folds["fold"] == str(fold), "id"])
    _, _, out, err = trained_run.stages[1]
    log = err + out
    assert "(best), saved" in log and "external" in log
    assert "fold 0: best jaccard" in out  # train_fold.py prints the metric by its name


def test_submission_matches_the_sample_and_cv_is_printed(trained_run):
    submission = pd.read_csv(trained_run.submission, dtype=str, keep_default_na=False)
    sample = pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["id", "PredictionString"]
    assert submission["id"].tolist() == sample["id"].tolist()
    test = pd.read_csv(TEST_CSV, dtype=str).set_index("id")
    for row in submission.itertuples():  # every answer is a piece of its context
        assert row.PredictionString.strip() and row.PredictionString in test.loc[row.id, "context"]
    nbest = pd.read_csv(trained_run.submission.with_suffix(".nbest.csv"), dtype=str, keep_default_na=False)
    assert set(nbest["id"]) == set(sample["id"])
    report = trained_run.stages[-1][2]
    assert "CV Jaccard (out-of-fold, 40" not in report  # the CV covers all training rows, not the capped subset
    assert "CV Jaccard (out-of-fold" in report and "per fold:" in report and "hindi:" in report
    record = latest_test_outputs(trained_run.root)
    scores = artifacts.load_scores(record.home.test_scores(record.key, 0))
    lengths = test.loc[list(scores.ids), "context"].str.len().to_numpy()
    np.testing.assert_array_equal(scores.lengths, lengths)  # one score row per character of each context


def test_bad_inputs_exit_with_status_2_and_name_the_problem(trained_run, tmp_path):
    bad_sample = tmp_path / "sample_submission.csv"
    pd.read_csv(SAMPLE_CSV, dtype=str).iloc[:3].to_csv(bad_sample, index=False)
    code, _, err = run_cli("ensemble.py", "--experiments", trained_run.root, "--test-csv", TEST_CSV,
                           "--sample-submission", bad_sample)
    assert code == 2 and "sample_submission.csv" in err and "Traceback" not in err
    code, _, err = run_cli("train_fold.py", "--fold", 0, *sets(trained_run.overrides), "--set", "train.learning_rate=1")
    assert code == 2 and "unknown key(s) learning_rate" in err
    code, _, err = run_cli("train_fold.py", "--fold", 7, *sets(trained_run.overrides))
    assert code == 2 and "--fold 7" in err


def test_metrics_history_holds_what_learning_curves_need(trained_run):
    """Each evaluation records the mean training loss since the previous one and the learning rate it ran at."""
    cfg_lr, warmup = 1e-4, 0.1  # the tiny run's train.lr and train.warmup_ratio (config defaults)
    for fold in (0, 1):
        metrics = json.loads(artifacts.RunPaths(trained_run.root).metrics(fold).read_text())
        history = metrics["history"]
        healing = [metrics[k] for k in ("events", "nonfinite_steps", "reverts", "lr_scale")]
        assert healing == [[], 0, 0, 1.0]  # a clean run: nothing skipped or reverted
        total = history[-1]["step"]
        for entry in history:
            assert set(entry) == {"step", "epoch", "jaccard", "train_loss", "lr", "elapsed_s", "windows_per_s"}
            assert entry["windows_per_s"] > 0  # (no peak_memory_gib: that is CUDA's)
            assert math.isfinite(entry["train_loss"]) and 0 < entry["train_loss"] < 20, entry
            # linear warmup then linear decay to 0 at the last step: the rate the step at `step` ran at
            warmup_steps = round(warmup * total)
            expected = cfg_lr * (entry["step"] - 1) / warmup_steps if entry["step"] <= warmup_steps else \
                cfg_lr * (total - entry["step"] + 1) / (total - warmup_steps)
            assert math.isclose(entry["lr"], expected, rel_tol=1e-6), (entry, expected)
        assert len({entry["train_loss"] for entry in history}) == len(history)  # one mean per stretch, not one value
