"""Test outputs are named and recorded by the settings that made them (README "Run folder"): other settings or
another test file never replace earlier outputs, ensemble.py says which it blends and refuses outputs of another test
file, several settings of one run blend as members, and infer.py --out-dir predicts a run it does not write into.

Each test works on a copy of the session's tiny trained run (conftest.trained_run)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from foldnlp import artifacts, test_outputs
from foldnlp.config import load_config
from foldnlp.provenance import file_sha256
from foldnlp.steps.train_fold import train_fold
from helpers import SAMPLE_CSV, TEST_CSV, latest_test_outputs, run_cli

TEST = ["--test-csv", TEST_CSV, "--sample-submission", SAMPLE_CSV]


def copy_of(trained_run, folder: Path) -> Path:
    shutil.copytree(trained_run.root, folder)
    return folder


def infer(run_dir: Path, *argv) -> tuple[str, test_outputs.Record]:
    code, out, err = run_cli("infer.py", "--run-dir", run_dir, *argv, "--quiet")
    assert code == 0, err[-3000:]
    return out, latest_test_outputs(argv[argv.index("--out-dir") + 1] if "--out-dir" in argv else run_dir)


def ensemble(*argv) -> tuple[int, str, str]:
    return run_cli("ensemble.py", *argv, "--quiet")


def small_test_set(folder: Path, rows: int = 3) -> tuple[Path, Path]:
    """The first rows of the fixture test set as another test file, with its sample submission."""
    folder.mkdir(parents=True, exist_ok=True)
    test = pd.read_csv(TEST_CSV, dtype=str, keep_default_na=False).iloc[:rows]
    test.to_csv(folder / "small.csv", index=False)
    test[["id"]].assign(PredictionString="").to_csv(folder / "sample_submission.csv", index=False)
    return folder / "small.csv", folder / "sample_submission.csv"


def test_other_settings_get_their_own_folder_and_record(trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path / "outputs" / "a")
    first = latest_test_outputs(run)  # the fixture's infer.py run, default settings
    before = artifacts.RunPaths(run).test_scores(first.key, 0).read_bytes()
    out, stride = infer(run, *TEST, "--doc-stride", 16, "--batch-size", 7)
    assert stride.key != first.key and stride.key.startswith("chaii_test-")
    assert artifacts.RunPaths(run).test_keys() == sorted([first.key, stride.key])
    assert artifacts.RunPaths(run).test_scores(first.key, 0).read_bytes() == before  # the earlier outputs stay
    record = json.loads(artifacts.RunPaths(run).test_record(stride.key).read_text())
    assert record["test_csv"] == {"path": str(TEST_CSV), "sha256": file_sha256(TEST_CSV)}
    assert record["window"] == {"features.max_len": 96, "features.doc_stride": 16, "qa.max_context_words": None}
    assert record["changed"] == ["features.doc_stride: 32 → 16"] and first.data["changed"] == []
    assert record["folds"] == [0, 1] and record["precision"] in ("fp32", "bf16")
    assert record["runtime"]["batch_size"] == 7 and record["run_dir"] == str(run.resolve())
    assert f"wrote test outputs to {run / 'test' / stride.key}/" in out and "features.doc_stride: 32 → 16" in out
    # What does not change the scores (batch size, chunk size) does not make another folder.
    _, again = infer(run, *TEST, "--doc-stride", 16, "--batch-size", 3, "--chunk-chars", 2000)
    assert again.key == stride.key and artifacts.RunPaths(run).test_keys() == sorted([first.key, stride.key])
    # Nor do folds predicted one at a time: the record collects them.
    shutil.rmtree(run / "test" / stride.key)
    _, fold1 = infer(run, *TEST, "--doc-stride", 16, "--folds", 1)
    assert fold1.key == stride.key and fold1.folds == [1]
    _, both = infer(run, *TEST, "--doc-stride", 16, "--folds", 0)
    assert both.key == stride.key and both.folds == [0, 1]


def test_ensemble_blends_the_latest_outputs_of_its_test_file_and_says_which(trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path / "outputs" / "a")
    first = latest_test_outputs(run)
    _, stride = infer(run, *TEST, "--doc-stride", 16)
    code, out, err = ensemble("--experiments", run, *TEST, "--out", tmp_path / "latest.csv", "--no-cv")
    assert code == 0, err[-3000:]
    assert f"test outputs blended (for {TEST_CSV}, sha256 {file_sha256(TEST_CSV)[:12]}):" in out
    assert f"{run}@{stride.key}: folds [0, 1]" in out and first.key not in out
    # RUN@KEY picks the earlier outputs: the submission is the fixture's own, byte for byte.
    code, out, err = ensemble("--experiments", f"{run}@{first.key}", *TEST, "--out", tmp_path / "first.csv",
                              "--no-cv")
    assert code == 0, err[-3000:]
    assert (tmp_path / "first.csv").read_bytes() == trained_run.submission.read_bytes()
    # Both settings of the one run, blended as two members (a test-time ensemble).
    code, out, err = ensemble("--experiments", run, f"{run}@{first.key}", *TEST, "--out", tmp_path / "tta.csv")
    assert code == 0, err[-3000:]
    assert f"{run}@{stride.key}: folds" in out and f"{run}@{first.key}: folds" in out
    assert pd.read_csv(tmp_path / "tta.csv")["id"].tolist() == pd.read_csv(SAMPLE_CSV)["id"].tolist()


def test_ensemble_refuses_outputs_of_another_test_file(trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path / "outputs" / "a")
    small, small_sample = small_test_set(tmp_path / "small")
    _, other = infer(run, "--test-csv", small, "--sample-submission", small_sample)
    assert other.key.startswith("small-") and other.test_sha256 == file_sha256(small)
    code, _, err = ensemble("--experiments", f"{run}@{other.key}", *TEST, "--no-cv")
    assert code == 2 and "Traceback" not in err
    assert (f"{run}@{other.key} was made from {small} (sha256 {other.test_sha256[:12]}), but the submission is for "
            f"{TEST_CSV} (sha256 {file_sha256(TEST_CSV)[:12]}): blend outputs of one test file: pass --test-csv "
            f"{small}") in err
    # The same file name with other content is another test file: its outputs are not blended.
    pd.read_csv(small, dtype=str).iloc[:2].to_csv(small, index=False)
    pd.read_csv(small_sample, dtype=str).iloc[:2].to_csv(small_sample, index=False)
    code, _, err = ensemble("--experiments", run, "--test-csv", small, "--sample-submission", small_sample, "--no-cv")
    assert code == 2
    assert f"{run}: no test outputs to blend, none made from {small} (sha256 {file_sha256(small)[:12]})" in err
    assert f"{other.key} (made from {small}, sha256 {other.test_sha256[:12]}, folds [0, 1])" in err
    assert f"Run `python infer.py --run-dir {run} --test-csv {small}`" in err


def test_outputs_of_the_old_layout_are_pointed_out(trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path / "outputs" / "a")
    record = latest_test_outputs(run)
    for k in (0, 1):  # what foldnlp wrote before settings keys: test/fold<k>_scores.npz, no record
        shutil.move(artifacts.RunPaths(run).test_scores(record.key, k), run / "test" / f"fold{k}_scores.npz")
    shutil.rmtree(run / "test" / record.key)
    code, _, err = ensemble("--experiments", run, *TEST, "--no-cv")
    assert code == 2 and f"{run / 'test'}/ holds outputs of an older foldnlp (fold0_scores.npz...)" in err
    assert "Run `python infer.py --run-dir" in err


def test_retraining_a_fold_drops_its_test_outputs(trained_run):
    run = copy_of(trained_run, trained_run.tmp / "outputs" / "retrained")
    record = latest_test_outputs(run)
    train_fold(load_config(None, trained_run.settings("retrained")), 1, overwrite=True, progress=False)
    assert latest_test_outputs(run).folds == [0]  # fold 1's outputs came from the replaced checkpoint
    assert not artifacts.RunPaths(run).test_scores(record.key, 1).exists()
    assert artifacts.RunPaths(run).test_scores(record.key, 0).is_file()
    code, _, err = ensemble("--experiments", run, *TEST, "--no-cv")
    assert code == 2 and "holds every fold of [0, 1]" in err and f"{record.key} (made from" in err
    code, _, err = ensemble("--experiments", f"{run}@{record.key}", *TEST, "--no-cv")
    assert code == 2 and f"{run}@{record.key} holds folds [0], not [1] of the folds [0, 1] to blend: run " \
                         f"`python infer.py --run-dir {run} --test-csv {TEST_CSV} --folds 1`" in err


def test_out_dir_predicts_a_run_without_writing_into_it(trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path / "theirs" / "a")
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    mine = tmp_path / "mine" / "a_on_fixture"
    _, record = infer(run, "--out-dir", mine, *TEST)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written into the run folder
    assert json.loads((mine / "run.json").read_text()) == {"run_dir": str(run.resolve())}
    assert record.home.root == mine and (mine / "test" / record.key / "fold1_scores.npz").is_file()
    # ensemble.py blends from there, with the run's CV, and writes beside the first member by default.
    code, out, err = ensemble("--experiments", mine, *TEST)
    assert code == 0, err[-3000:]
    assert "CV Jaccard (out-of-fold" in out and f"{mine}@{record.key}: folds [0, 1]" in out
    assert f"wrote {tmp_path / 'mine' / 'submission.csv'}" in out
    assert (tmp_path / "mine" / "submission.csv").read_bytes() == trained_run.submission.read_bytes()
    assert (tmp_path / "mine" / "submission.nbest.csv").is_file()
    # One --out-dir holds the outputs of one run; another run folder is not an --out-dir.
    other = copy_of(trained_run, tmp_path / "theirs" / "b")
    code, _, err = run_cli("infer.py", "--run-dir", other, "--out-dir", mine, *TEST, "--quiet")
    assert code == 2 and f"--out-dir {mine} holds test outputs of {run.resolve()} (see {mine / 'run.json'})" in err
    code, _, err = run_cli("infer.py", "--run-dir", other, "--out-dir", run, *TEST, "--quiet")
    assert code == 2 and f"--out-dir {run} is another run folder (it has config.yaml)" in err
    # A moved run folder is named, with the fix.
    shutil.move(run, tmp_path / "moved")
    code, _, err = ensemble("--experiments", mine, *TEST)
    assert code == 2 and f"holds test outputs of the run folder {run.resolve()} (see {mine / 'run.json'}), which " \
                         "is not there" in err


def test_member_names_with_keys_parse():
    from foldnlp.steps.ensemble import default_out, parse_member

    assert parse_member("outputs/a@test-0123abcd") == (Path("outputs/a"), "test-0123abcd")
    assert parse_member("outputs/a") == (Path("outputs/a"), None)
    assert parse_member("runs@home/a") == (Path("runs@home/a"), None)  # an '@' in a parent folder is a path
    assert default_out("outputs/a@test-0123abcd") == Path("outputs/submission.csv")
    assert default_out("/data/runs/x") == Path("/data/runs/submission.csv")
    record = {"test_sha256": "0" * 64, "config_sha256": "1" * 64, "precision": "bf16"}
    key = test_outputs.settings_key("data/test v2.csv", record)
    assert test_outputs.KEY_PATTERN.fullmatch(key) and key.startswith("test_v2-")
    assert test_outputs.settings_key("data/test v2.csv", {**record, "precision": "fp32"}) != key


@pytest.mark.parametrize("script", ["infer.py", "ensemble.py"])
def test_help_names_the_run_folder_by_output_dir(script, capsys):
    from helpers import main_of

    with pytest.raises(SystemExit):
        main_of(script)(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "outputs/<name>/" not in text
    if script == "infer.py":
        assert "<output_dir>/<name>/" in text and "--run-dir" in text and "OUT_DIR/test/<key>/" in text
    else:
        assert "RUN@KEY" in text and "submission.csv beside the first experiment's folder" in text
