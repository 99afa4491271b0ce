"""The offline Kaggle kernel for a span-segmentation experiment, whose test is a folder of essays: the learnt classes
and the decoding rules fit on the out-of-fold blend reach the kernel, a local run copies the test folder to
input/<competition>/test/, the kernel infers that folder, and its submission equals the local ensemble's; the budget
counts the windows of a test folder."""

import json
import shutil
import sys

import pandas as pd
import pytest
import yaml

from foldnlp import artifacts
from foldnlp.config import load_config
from foldnlp.errors import InputError
from foldnlp.kaggle import __main__ as kaggle_cli
from foldnlp.kaggle import localrun, wheels
from foldnlp.kaggle.localrun import run_kernel_locally
from foldnlp.modeling import load_tokenizer
from foldnlp.tasks import get_task
from helpers import ROOT, logging_restored, run_cli
from spans import CLASSES, FEEDBACK_TEST

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
COMPETITION = "feedback-prize-2021"
NAME = "foldnlp-spans"
SAMPLE = FEEDBACK_TEST / "sample_submission.csv"


@pytest.fixture(scope="module")
def spans_run(spans_feedback_run, tmp_path_factory):
    """A copy of the Feedback run (local inference on the public essays adds test outputs to it), with the
    decoding rules its ensemble fit."""
    root = tmp_path_factory.mktemp("spans-kaggle") / "outputs" / "s"
    shutil.copytree(spans_feedback_run.root, root)
    return root


@pytest.fixture(scope="module")
def decoding(spans_feedback_run):
    return spans_feedback_run.submission.with_suffix(".decoding.json")


@pytest.fixture(scope="module")
def local_submission(spans_run, tmp_path_factory):
    """infer.py and ensemble.py here on the fixture's 5 public test essays (a folder)."""
    out = tmp_path_factory.mktemp("spans-local") / "submission.csv"
    test = ["--test-csv", FEEDBACK_TEST, "--sample-submission", SAMPLE]
    code, _, err = run_cli("infer.py", "--run-dir", spans_run, *test, "--quiet")
    assert code == 0, err[-3000:]
    code, _, err = run_cli("ensemble.py", "--experiments", spans_run, *test, "--out", out, "--quiet")
    assert code == 0, err[-3000:]
    return out


def build(run, decoding, out, *, offline: bool) -> None:
    argv = ["build", "--experiments", str(run), "--competition", COMPETITION, "--user", "foldnlp-tester", "--name",
            NAME, "--out", str(out), "--no-gpu", "--requirements", str(ROOT / "requirements.txt"),
            "--python-version", PYTHON, "--decoding", str(decoding), "--quiet"]
    if offline:
        argv += ["--kaggle-has", *wheels.INFERENCE_PACKAGES]
    with logging_restored():
        assert kaggle_cli.main(argv) == 0


@pytest.fixture(scope="module")
def built_offline(spans_run, decoding, tmp_path_factory):
    out = tmp_path_factory.mktemp("spans-bundle") / "bundle"
    build(spans_run, decoding, out, offline=True)
    return out


def test_the_bundle_ships_the_learnt_classes_and_the_fitted_rules(built_offline, decoding):
    weights = built_offline / "datasets" / f"{NAME}-weights" / "s"
    for fold in (0, 1):
        model = weights / f"fold{fold}" / "model"
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in model.iterdir()}
        beside = yaml.safe_load((model / artifacts.CONFIG_BESIDE_WEIGHTS).read_text())
        assert beside["spans"]["classes"] == list(CLASSES)
    fitted = json.loads(decoding.read_text())["spans.decode.class_rules"]
    config = yaml.safe_load((weights / "config.yaml").read_text())
    assert config["task"] == "spans" and config["spans"]["decode"]["class_rules"] == fitted
    assert (built_offline / "kernel" / f"{NAME}.py").is_file()
    assert not (built_offline / "datasets" / f"{NAME}-wheels").exists() or not any(
        p.suffix == ".whl" for p in (built_offline / "datasets" / f"{NAME}-wheels").iterdir())


def test_a_local_run_copies_a_test_folder_as_a_folder(built_offline, tmp_path):
    tree = localrun.make_kernel_tree(built_offline, FEEDBACK_TEST, SAMPLE, tmp_path / "kaggle")
    competition = tree.input_dir / COMPETITION
    assert sorted(p.name for p in (competition / "test").iterdir()) == sorted(p.name for p in FEEDBACK_TEST.iterdir())
    assert (competition / "sample_submission.csv").read_bytes() == SAMPLE.read_bytes()
    assert not (competition / "test.csv").exists()
    with pytest.raises(InputError, match="no such file or folder"):
        localrun.make_kernel_tree(built_offline, tmp_path / "absent", SAMPLE, tmp_path / "kaggle")


def test_the_kernel_infers_the_test_folder_as_the_local_ensemble_does(built_offline, local_submission, decoding,
                                                                    tmp_path):
    """The kernel's inference and blend in this process (no install, no network) on input/<competition>/test/."""
    script = (built_offline / "kernel" / f"{NAME}.py").read_text()
    namespace: dict = {"__name__": "kernel"}
    exec(compile(script, "kernel", "exec"), namespace)
    competition = tmp_path / "input" / COMPETITION
    shutil.copytree(FEEDBACK_TEST, competition / "test")
    shutil.copy(SAMPLE, competition / "sample_submission.csv")
    with logging_restored():
        out = namespace["predict"](built_offline / "datasets" / f"{NAME}-weights", competition, tmp_path / "working")
    (key,) = artifacts.RunPaths(tmp_path / "working" / "runs" / "s").test_keys()
    record = json.loads(artifacts.RunPaths(tmp_path / "working" / "runs" / "s").test_record(key).read_text())
    assert record["test_csv"]["path"] == str(competition / "test")
    assert out.read_bytes() == local_submission.read_bytes()
    submission = pd.read_csv(out, dtype=str)
    assert submission.columns.tolist() == ["id", "class", "predictionstring"] and len(submission) > 0
    assert set(submission["id"]) <= {p.stem for p in FEEDBACK_TEST.glob("*.txt")}
    for rule in json.loads(decoding.read_text())["spans.decode.class_rules"]:  # the fitted rules decoded the blend
        cls, min_words, _ = rule.split(":")
        assert (submission.loc[submission["class"] == cls, "predictionstring"].str.split().map(len)
                >= int(min_words)).all()


def test_budget_counts_the_windows_of_a_test_folder(spans_run, capsys):
    with logging_restored():
        code = kaggle_cli.main(["budget", "--experiments", str(spans_run), "--test-csv", str(FEEDBACK_TEST)])
    out = capsys.readouterr().out
    assert code == 0 and f"Inference budget: {FEEDBACK_TEST} (5 rows) on cpu" in out and ": fits" in out
    run = artifacts.RunPaths(spans_run)
    task = get_task(load_config(run.model_dir(0) / artifacts.CONFIG_BESIDE_WEIGHTS))
    test, _ = task.read_test(FEEDBACK_TEST, None)
    windows = len(task.windows(load_tokenizer(str(run.model_dir(0))), test, with_targets=False))
    row = next(line for line in out.splitlines() if line.startswith("s "))
    assert row.split()[1:6] == ["2", "64", "16", "-", str(windows)]  # folds, max_len, stride, words, windows
    assert windows > len(test)  # essays of 363 to 1,056 words need several 64-token windows


@pytest.mark.network
def test_the_kernel_submission_on_the_public_essays_equals_the_local_one(spans_run, decoding, local_submission,
                                                                          tmp_path):
    out = tmp_path / "bundle"
    build(spans_run, decoding, out, offline=False)
    result = run_kernel_locally(out, FEEDBACK_TEST, SAMPLE, tmp_path / "kaggle", timeout=900)
    assert result.network_probe.startswith("blocked")
    kernel = pd.read_csv(result.submission, dtype=str)
    local = pd.read_csv(local_submission, dtype=str)
    pd.testing.assert_frame_equal(kernel, local)
    assert "[kernel] installed from" in result.log
