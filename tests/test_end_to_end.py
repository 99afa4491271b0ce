"""The whole week through the real CLIs: make_folds → train_fold (every fold) → infer → ensemble, with a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldnlp import artifacts

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    overrides = ["name=tiny", f"output_dir={tmp / 'outputs'}", f"folds.folds_dir={tmp / 'folds'}",
                 f"model.name_or_path={tiny_model_dir}", "folds.n_folds=2", "data.max_train_examples=48",
                 "features.max_len=128", "features.doc_stride=48", "train.epochs=1", "train.batch_size=8",
                 "train.evals_per_epoch=2", "tracking.wandb=disabled",
                 f"data.external_squad=[english:{ROOT / 'input' / 'external' / 'xquad.en.json'}]"]
    sets = [a for o in overrides for a in ("--set", o)]
    done = [cli("make_folds.py", *sets)]
    for fold in (0, 1):
        done.append(cli("train_fold.py", "--fold", fold, *sets))
    done.append(cli("infer.py", *sets, "--test-csv", FIXTURES / "chaii_test.csv", "--sample-submission",
                    FIXTURES / "chaii_sample_submission.csv", "--doc-stride", 32))
    out = tmp / "submission.csv"
    done.append(cli("ensemble.py", "--experiments", tmp / "outputs" / "tiny", "--test-csv", FIXTURES / "chaii_test.csv",
                    "--sample-submission", FIXTURES / "chaii_sample_submission.csv", "--out", out))
    return tmp, done, sets


def test_every_stage_succeeds(trained_run):
    _, done, _ = trained_run
    for result in done:
        assert result.returncode == 0, f"{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def test_training_keeps_best_checkpoint_and_out_of_fold_outputs(trained_run):
    tmp, done, _ = trained_run
    run = artifacts.RunPaths(tmp / "outputs" / "tiny")
    assert run.trained_folds() == [0, 1]
    folds = pd.read_csv(next((tmp / "folds").glob("*.csv")), dtype=str)
    for fold in (0, 1):
        assert (run.model_dir(fold) / "model.safetensors").is_file()
        assert not list(run.model_dir(fold).glob("*.bin"))
        assert (run.model_dir(fold) / artifacts.CONFIG_BESIDE_WEIGHTS).is_file()
        metrics = json.loads(run.metrics(fold).read_text())
        assert len(metrics["history"]) >= 2 and metrics["jaccard"] == max(h["jaccard"] for h in metrics["history"])
        oof = artifacts.load_char_scores(run.oof_scores(fold))
        assert set(oof.ids) == set(folds.loc[folds["fold"] == str(fold), "id"])
    log = done[1].stderr + done[1].stdout
    assert "(best), saved" in log and "external" in log


def test_submission_matches_the_sample_and_cv_is_printed(trained_run):
    tmp, done, _ = trained_run
    submission = pd.read_csv(tmp / "submission.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(FIXTURES / "chaii_sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["id", "PredictionString"]
    assert submission["id"].tolist() == sample["id"].tolist()
    test = pd.read_csv(FIXTURES / "chaii_test.csv", dtype=str).set_index("id")
    for row in submission.itertuples():  # every answer is a piece of its context
        assert row.PredictionString.strip() and row.PredictionString in test.loc[row.id, "context"]
    report = done[-1].stdout
    assert "CV Jaccard (out-of-fold, 48" not in report  # the CV covers all training rows, not the capped subset
    assert "CV Jaccard (out-of-fold" in report and "per fold:" in report and "hindi:" in report
    scores = artifacts.load_char_scores(tmp / "outputs" / "tiny" / "test" / "fold0_scores.npz")
    lengths = test.loc[list(scores.ids), "context"].str.len().to_numpy()
    np.testing.assert_array_equal(np.diff(scores.offsets), lengths)  # one score per character of each context


def test_bad_inputs_exit_with_status_2_and_name_the_problem(trained_run, tmp_path):
    tmp, _, sets = trained_run
    bad_sample = tmp_path / "sample_submission.csv"
    pd.read_csv(FIXTURES / "chaii_sample_submission.csv", dtype=str).iloc[:3].to_csv(bad_sample, index=False)
    result = cli("ensemble.py", "--experiments", tmp / "outputs" / "tiny", "--test-csv", FIXTURES / "chaii_test.csv",
                 "--sample-submission", bad_sample)
    assert result.returncode == 2 and "sample_submission.csv" in result.stderr and "Traceback" not in result.stderr
    result = cli("train_fold.py", "--fold", 0, *sets, "--set", "train.learning_rate=1")
    assert result.returncode == 2 and "unknown key(s) learning_rate" in result.stderr
    result = cli("train_fold.py", "--fold", 7, *sets)
    assert result.returncode == 2 and "--fold 7" in result.stderr
