"""ensemble.py --fit-weights: member weights fit on the out-of-fold outputs by greedy selection, reported beside
each member alone and the equal-weight blend with the honest per-fold estimate, written beside the submission
and used for the test blend; for every task."""

import json
import re
import shutil

import numpy as np
import pytest

from documents import document_run
from foldnlp import artifacts
from foldnlp.scores import VALUE, Scores
from helpers import SAMPLE_CSV, TEST_CSV, run_cli

FITTED = re.compile(r"^  fitted weights +([\d.]+)  \(", re.MULTILINE)


def value_of(report: str, label: str, suffix: str = "") -> float:
    return float(re.search(rf"^  {re.escape(label)} +([\d.]+){re.escape(suffix)}$", report, re.MULTILINE)[1])


@pytest.fixture(scope="module")
def two_seeds(document_model_dir, tmp_path_factory):
    """Two tiny regression experiments (RMSE, lower is better) on the same data and folds, trained with other
    seeds and learning rates."""
    tmp = tmp_path_factory.mktemp("fit-weights")
    section = {"label_columns": ["score"], "metric": "rmse"}
    first = document_run(tmp, document_model_dir, "regress", section, {"score": "1"}, name="d")
    second = document_run(tmp, document_model_dir, "regress", section, {"score": "1"},
                          ["train.seed=7", "train.lr=3e-4"], name="e")
    return first, second


def noisy_copy(run_root, dest, seed: int):
    """A copy of a run folder whose out-of-fold and test scores carry noise: a second member of the same folds."""
    shutil.copytree(run_root, dest)
    paths, rng = artifacts.RunPaths(dest), np.random.default_rng(seed)
    files = [paths.oof_scores(k) for k in paths.trained_folds()]
    files += [paths.test_scores(key, k) for key in paths.test_keys() for k in paths.trained_folds()
              if paths.test_scores(key, k).is_file()]
    for path in files:
        s = artifacts.load_scores(path)
        noise = rng.normal(0, 0.3 if s.kind == VALUE else 1.0, size=s.values.shape)
        artifacts.save_scores(path, Scores(s.ids, s.offsets, (s.values + noise).astype(s.values.dtype), s.unit,
                                           s.channels, s.kind))
    return dest


def check_fit(report: str, labels: list[str], weights_file, higher_is_better: bool) -> list[float]:
    """The report's figures obey the fit's guarantees; returns the fitted weights as written."""
    sign = 1 if higher_is_better else -1
    alone = [value_of(report, label, "  alone") for label in labels]
    equal, fitted = value_of(report, "equal weights"), float(FITTED.search(report)[1])
    assert sign * fitted >= sign * equal and sign * fitted >= max(sign * a for a in alone)
    record = json.loads(weights_file.read_text())
    assert [m["spec"] for m in record["members"]] == labels
    weights = [m["weight"] for m in record["members"]]
    assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert record["cv"]["fitted_weights"] == pytest.approx(fitted, abs=5e-5)
    for k in (0, 1):
        assert re.search(rf"^  fold {k} \(n=\d+\): equal weights [\d.]+, weights fit on the other folds [\d.]+ \(.* "
                         r"equal weights; weights [\d. ]+\)$", report, re.MULTILINE)
        assert len(record["per_fold"][str(k)]["weights"]) == len(labels)
    honest = re.search(r"^  all folds: equal weights ([\d.]+), weights fit on the other folds ([\d.]+) \(the honest "
                       r"estimate: ([\d.]+ better than|[\d.]+ worse than|the same as) equal weights\)$", report,
                       re.MULTILINE)
    assert honest and float(honest[1]) == equal
    assert record["cv"]["weights_fit_on_other_folds"] == pytest.approx(float(honest[2]), abs=5e-5)
    return weights


def test_fitted_weights_beat_equal_weights_and_blend_the_test_as_given_weights_would(two_seeds, tmp_path):
    first, second = two_seeds
    labels = [str(first.root), str(second.root)]
    out = tmp_path / "fitted.csv"
    code, report, err = run_cli("ensemble.py", "--experiments", *labels, "--fit-weights", "--out", out, "--quiet")
    assert code == 0, err[-3000:]
    assert "rmse on the same 40 ids (lower is better)" in report and "of each member on the same" not in report
    weights = check_fit(report, labels, out.with_suffix(".weights.json"), higher_is_better=False)
    # The out-of-fold CV printed first is the fitted blend's.
    cv = float(re.search(r"^CV rmse .*?: ([\d.]+)", report, re.MULTILINE)[1])
    assert cv == pytest.approx(float(FITTED.search(report)[1]), abs=5e-5)
    assert report.count(f"wrote {out}") == 1 and f"wrote {out.with_suffix('.weights.json')}" in report
    given = tmp_path / "given.csv"
    code, _, err = run_cli("ensemble.py", "--experiments", *labels, "--weights", *map(repr, weights), "--out", given,
                           "--quiet")
    assert code == 0, err[-3000:]
    assert given.read_bytes() == out.read_bytes()


def test_one_member_has_nothing_to_fit_and_fitting_is_refused_with_weights_or_without_cv(two_seeds, tmp_path):
    first, second = two_seeds
    out = tmp_path / "one.csv"
    code, report, err = run_cli("ensemble.py", "--experiments", first.root, "--fit-weights", "--out", out, "--quiet")
    assert code == 0, err[-3000:]
    assert "--fit-weights: one experiment, nothing to fit (its weight is 1)" in report
    assert out.is_file() and not out.with_suffix(".weights.json").exists()
    for extra, message in ((["--weights", "1", "2"], "--fit-weights fits the weights on the out-of-fold outputs: "
                                                     "drop --weights"),
                           (["--no-cv"], "--fit-weights fits the weights on the out-of-fold outputs, which --no-cv "
                                         "skips: drop one")):
        code, _, err = run_cli("ensemble.py", "--experiments", first.root, second.root, "--fit-weights", *extra,
                               "--out", tmp_path / "no.csv", "--quiet")
        assert code == 2 and err.strip() == f"error: {message}"
        assert not (tmp_path / "no.csv").exists()


@pytest.mark.parametrize("fixture, test, higher_is_better", [
    ("trained_run", ["--test-csv", TEST_CSV, "--sample-submission", SAMPLE_CSV], True),
    ("single_label_run", [], True), ("multi_target_run", [], False), ("spans_bio_run", [], True)])
def test_every_task_fits_weights(fixture, test, higher_is_better, request, tmp_path):
    """QA (Jaccard), classification (accuracy), regression (MCRMSE, lower is better) and spans (overlap-F1): a run
    and a noisy copy of it."""
    run = request.getfixturevalue(fixture)
    noisy = noisy_copy(run.root, tmp_path / "noisy", seed=0)
    labels = [str(run.root), str(noisy)]
    out = tmp_path / "fitted.csv"
    code, report, err = run_cli("ensemble.py", "--experiments", *labels, "--fit-weights", *test, "--out", out,
                                "--quiet")
    assert code == 0, err[-3000:]
    assert f"({'higher' if higher_is_better else 'lower'} is better):" in report
    check_fit(report, labels, out.with_suffix(".weights.json"), higher_is_better)
    assert out.is_file()
