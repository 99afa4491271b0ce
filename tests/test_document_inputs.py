"""Document files a user gets wrong, and documents never seen in training: one line naming the file, column and
rows, exit status 2; empty and very long texts are predicted like any other."""

import re

import pandas as pd
import pytest

from helpers import run_cli


def infer(run, tmp_path, test: pd.DataFrame, sample: pd.DataFrame | None = None):
    test_csv, sample_csv = tmp_path / "test.csv", tmp_path / "sample_submission.csv"
    test.to_csv(test_csv, index=False)
    (sample if sample is not None else pd.DataFrame({"id": test["id"], "label": "neg"})).to_csv(sample_csv,
                                                                                                index=False)
    return run_cli("infer.py", "--run-dir", run.root, "--out-dir", tmp_path / "out", "--test-csv", test_csv)


def test_empty_and_very_long_reviews_are_predicted(single_label_run, tmp_path):
    test = pd.DataFrame({"id": ["empty", "long", "unicode"],
                         "text": ["", "superb " * 5000, "शानदार फ़िल्म 🎬 — 很好"]})
    code, out, err = infer(single_label_run, tmp_path, test)
    assert code == 0, err[-2000:]
    code, out, err = run_cli("ensemble.py", "--experiments", tmp_path / "out", "--test-csv", tmp_path / "test.csv",
                             "--out", tmp_path / "submission.csv")
    assert code == 0, err[-2000:]
    submission = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    assert submission["id"].tolist() == ["empty", "long", "unicode"] and set(submission["label"]) <= {"neg", "pos"}


@pytest.mark.parametrize("test, sample, message", [
    (pd.DataFrame({"id": ["a"], "review": ["x"]}), None, r"test.csv: missing required column\(s\) text"),
    (pd.DataFrame({"id": ["a", "a"], "text": ["x", "y"]}), None, r"duplicated id\(s\): id a at rows 1, 2"),
    (pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"]}), pd.DataFrame({"id": ["a", "b"], "sentiment": [0, 0]}),
     r"sample_submission.csv: missing required column\(s\) label"),
    (pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"]}), pd.DataFrame({"id": ["a", "c"], "label": [0, 0]}),
     r"must list the same ids"),
])
def test_bad_test_files_exit_2_naming_the_problem(single_label_run, tmp_path, test, sample, message):
    code, out, err = infer(single_label_run, tmp_path, test, sample)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_a_training_file_that_is_not_utf8_or_has_blank_labels_exits_2(single_label_run, tmp_path):
    train = pd.read_csv(single_label_run.tmp / "data" / "train.csv", dtype=str)
    blank = tmp_path / "blank.csv"
    train.assign(label=train["label"].where(train.index != 3, "")).to_csv(blank, index=False)
    code, _, err = run_cli("make_folds.py", "--config", single_label_run.config, "--set", f"data.train_csv={blank}",
                           "--set", f"folds.folds_dir={tmp_path / 'folds'}")
    assert code == 2 and "column 'label' is empty in 1 row(s): row 4 (id doc0003)" in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,text,label\na,caf\xe9,pos\nb,x,neg\n".encode("latin-1"))
    code, _, err = run_cli("make_folds.py", "--config", single_label_run.config, "--set", f"data.train_csv={latin}",
                           "--set", f"folds.folds_dir={tmp_path / 'folds'}")
    assert code == 2 and "not UTF-8 (byte 0xe9 on line 2)" in err
