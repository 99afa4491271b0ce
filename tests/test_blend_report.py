"""ensemble.py's report puts each member's CV beside the blend's, on the same ids, so that a blend worse than its
best member shows; its --set takes only what a blend reads; every CLI flag is explained by --help."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from foldnlp import artifacts
from foldnlp.scores import Scores
from helpers import SAMPLE_CSV, TEST_CSV, main_of, parser_of, run_cli, unexplained_flags

TEST = ["--test-csv", TEST_CSV, "--sample-submission", SAMPLE_CSV]


def overall_cv(report: str) -> float:
    return float(re.search(r"CV Jaccard \(out-of-fold, \d+ questions, folds \[[\d, ]+\]\): ([\d.]+)", report)[1])


def member_value(report: str, label: str) -> float:
    return float(re.search(rf"^  {re.escape(label)} +([\d.]+)", report, re.MULTILINE)[1])


@pytest.fixture(scope="module")
def two_runs(trained_run, tmp_path_factory):
    """The tiny run and a copy whose out-of-fold and test scores all point at each context's first character (a
    member that is surely worse: a single character is hardly ever an answer's word)."""
    tmp = tmp_path_factory.mktemp("blend-report")
    good, bad = tmp / "good", tmp / "first_char"
    shutil.copytree(trained_run.root, good)
    shutil.copytree(trained_run.root, bad)
    paths = artifacts.RunPaths(bad)
    files = [paths.oof_scores(k) for k in (0, 1)]
    files += [paths.test_scores(key, k) for key in paths.test_keys() for k in (0, 1)]
    for path in files:
        scores = artifacts.load_scores(path)
        values = np.full(scores.values.shape, -1e4, dtype=np.float16)
        values[scores.offsets[:-1]] = 0.0  # log-probability 1 on the first character, as start and as end
        artifacts.save_scores(path, Scores(scores.ids, scores.offsets, values, scores.unit, scores.channels))
    return good, bad


def test_each_members_cv_is_shown_beside_the_blend(two_runs, tmp_path):
    good, bad = two_runs
    alone = {}
    for run in (good, bad):
        code, out, err = run_cli("ensemble.py", "--experiments", run, *TEST, "--out", tmp_path / "s.csv", "--quiet")
        assert code == 0, err[-3000:]
        assert "of each member" not in out  # one member: the blend is the member
        alone[run] = overall_cv(out)
    assert alone[good] > alone[bad]
    # Equal weights: each member's line is its own CV, the blend's line the blended CV.
    code, out, err = run_cli("ensemble.py", "--experiments", good, bad, *TEST, "--out", tmp_path / "s.csv", "--quiet")
    assert code == 0, err[-3000:]
    assert "jaccard of each member on the same 786 out-of-fold ids (higher is better):" in out
    assert member_value(out, str(good)) == alone[good] and member_value(out, str(bad)) == alone[bad]
    assert member_value(out, "blend") == overall_cv(out)
    # All weight on the worse member: the blend is that member, and the report says it is worse than the best.
    code, out, err = run_cli("ensemble.py", "--experiments", good, bad, "--weights", 0, 1, *TEST, "--out",
                             tmp_path / "s.csv", "--quiet")
    assert code == 0, err[-3000:]
    assert member_value(out, "blend") == alone[bad]
    worse = re.search(rf"  {alone[bad]:.4f}  \(WORSE than the best member, {re.escape(str(good))}, by ([\d.]+): drop "
                      r"or down-weight \(--weights, or --fit-weights\) the weaker members\)", out)
    assert worse and float(worse[1]) == pytest.approx(alone[good] - alone[bad], abs=1.5e-4)
    code, out, _ = run_cli("ensemble.py", "--experiments", good, bad, "--weights", 1, 0, *TEST, "--out",
                           tmp_path / "s.csv", "--quiet")
    assert f"(the same as the best member, {good})" in out


def test_ensemble_set_takes_decoding_and_data_settings_only(two_runs, tmp_path):
    good, _ = two_runs
    out = tmp_path / "short.csv"
    code, _, err = run_cli("ensemble.py", "--experiments", good, *TEST, "--out", out, "--no-cv", "--quiet",
                           "--set", "qa.decode.max_answer_chars=3")
    assert code == 0, err[-3000:]
    assert pd.read_csv(out, dtype=str, keep_default_na=False)["PredictionString"].str.len().max() <= 3
    for setting, key in (("features.doc_stride=16", "features.doc_stride"),
                         ("qa.max_context_words=50", "qa.max_context_words"), ("train.lr=1", "train.lr")):
        code, _, err = run_cli("ensemble.py", "--experiments", good, *TEST, "--no-cv", "--quiet", "--set", setting)
        assert code == 2 and err.strip() == (
            f"error: ensemble.py --set {setting}: a blend reads only the decoding and data settings of the first "
            f"experiment's config (data.*, folds.*, qa.decode.*); {key} is the folds' own: change it for "
            "inference with infer.py --set, then blend those outputs")
    with pytest.raises(SystemExit) as refused:  # a blend reads the run folders' own configs: there is no --config
        run_cli("ensemble.py", "--experiments", good, "--config", "configs/default.yaml")
    assert refused.value.code == 2


@pytest.mark.parametrize("script", ["make_folds.py", "train_fold.py", "infer.py", "ensemble.py", "score.py"])
def test_every_flag_is_explained_by_help(script, monkeypatch):
    assert unexplained_flags(parser_of(main_of(script), monkeypatch)) == []
