"""The offline Kaggle kernel for a document experiment: the head ships with the weights, decoding settings fit on
the out-of-fold blend reach the kernel (--decoding), and the kernel's submission equals the local one."""

import json
import sys

import pandas as pd
import pytest
import yaml

from foldnlp.kaggle import __main__ as kaggle_cli
from foldnlp.kaggle import wheels
from foldnlp.kaggle.localrun import run_kernel_locally
from helpers import ROOT, logging_restored

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def build(run, out, *, offline: bool) -> None:
    argv = ["build", "--experiments", str(run.root), "--competition", "some-essay-competition", "--user",
            "foldnlp-tester", "--name", "foldnlp-essays", "--out", str(out), "--no-gpu", "--requirements",
            str(ROOT / "requirements.txt"), "--python-version", PYTHON,
            "--decoding", str(run.submission.with_suffix(".decoding.json")), "--quiet"]
    if offline:
        argv += ["--kaggle-has", *wheels.INFERENCE_PACKAGES]
    with logging_restored():
        assert kaggle_cli.main(argv) == 0


@pytest.fixture(scope="module")
def built_offline(graded_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("essays-bundle") / "bundle"
    build(graded_run, out, offline=True)
    return out


def test_the_head_ships_with_the_weights_and_the_fitted_thresholds_with_the_config(graded_run, built_offline):
    weights = built_offline / "datasets" / "foldnlp-essays-weights" / "d"
    for fold in (0, 1):
        assert {"head.safetensors", "head.json", "model.safetensors"} <= {
            p.name for p in (weights / f"fold{fold}" / "model").iterdir()}
    fitted = json.loads(graded_run.submission.with_suffix(".decoding.json").read_text())["regress.thresholds"]
    config = yaml.safe_load((weights / "config.yaml").read_text())
    assert config["regress"]["thresholds"] == fitted


def test_a_decoding_file_that_is_not_json_is_refused(graded_run, tmp_path, capsys):
    bad = tmp_path / "decoding.json"
    bad.write_text("thresholds: [1, 2]")
    with logging_restored():
        code = kaggle_cli.main(["build", "--experiments", str(graded_run.root), "--competition", "c-c-c",
                                "--user", "foldnlp-tester", "--out", str(tmp_path / "b"), "--decoding", str(bad)])
    assert code == 2 and "--decoding" in capsys.readouterr().err


@pytest.mark.network
def test_the_kernel_submission_equals_the_local_one(graded_run, tmp_path):
    out = tmp_path / "bundle"
    build(graded_run, out, offline=False)
    sample = graded_run.test.with_name("sample_submission.csv")
    result = run_kernel_locally(out, graded_run.test, sample, tmp_path / "kaggle", timeout=900)
    assert result.network_probe.startswith("blocked")
    kernel = pd.read_csv(result.submission, dtype=str)
    local = pd.read_csv(graded_run.submission, dtype=str)
    pd.testing.assert_frame_equal(kernel, local)
    assert "[kernel] installed from" in result.log
