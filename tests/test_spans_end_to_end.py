"""Span segmentation through the real CLIs with a tiny model: make_folds → train_fold (both folds) → infer → ensemble
(→ score.py) on the IL-NER fixture (BIO files) and on a hand-made Feedback Prize layout whose config sets only
data.train_csv; and hostile inputs, each stopping a CLI with exit status 2 and one line naming the file and ids."""

import json
import shutil

import pandas as pd
import pytest
import yaml

from foldnlp import artifacts
from foldnlp.tasks.spans.data import read_bio_file, read_feedback_test, read_feedback_train
from foldnlp.tasks.spans.metrics import overlap_f1
from helpers import latest_test_outputs, run_cli, sets
from spans import CLASSES

BIO_CLASSES = ("NEAR", "NEL", "NEN", "NEO", "NEP", "NETI")


@pytest.fixture(params=["bio", "feedback"])
def any_run(request, spans_bio_run, spans_feedback_run):
    return {"bio": spans_bio_run, "feedback": spans_feedback_run}[request.param]


def documents(run) -> pd.DataFrame:
    """The run's training documents (id, text, spans)."""
    if run.train.suffix == ".txt":
        return read_bio_file(run.train, 4)
    return read_feedback_train(run.train)


def test_every_stage_exits_0(any_run):
    assert [(name, code) for name, code, _, _ in any_run.stages] == [
        ("make_folds", 0), ("fold 0", 0), ("fold 1", 0), ("infer", 0), ("ensemble", 0)]


def test_the_fold_file_keeps_each_document_in_one_fold(any_run):
    (fold_file,) = (any_run.tmp / "folds").glob("stratum-nogroup-k2-*.csv")
    folds = pd.read_csv(fold_file, dtype=str)
    ids = documents(any_run)["id"]
    assert folds.columns.tolist() == ["id", "fold"] and not folds["id"].duplicated().any()
    assert sorted(folds["id"]) == sorted(ids) and set(folds["fold"]) == {"0", "1"}
    if any_run.train.suffix == ".csv":  # many train.csv rows per essay, one fold per essay
        assert len(pd.read_csv(any_run.train)) > len(folds)


def test_each_fold_keeps_its_best_overlap_f1_and_the_classes_of_the_data(any_run):
    run = artifacts.RunPaths(any_run.root)
    classes = list(CLASSES if any_run.train.suffix == ".csv" else BIO_CLASSES)
    for fold in (0, 1):
        metrics = json.loads(run.metrics(fold).read_text())
        assert metrics["metric"] == "overlap_f1" and metrics["higher_is_better"] is True
        assert len(metrics["history"]) >= 2
        assert metrics["overlap_f1"] == max(h["overlap_f1"] for h in metrics["history"])
        beside = yaml.safe_load((run.model_dir(fold) / artifacts.CONFIG_BESIDE_WEIGHTS).read_text())
        assert beside["spans"]["classes"] == classes
        config = json.loads((run.model_dir(fold) / "config.json").read_text())
        assert list(config["id2label"].values()) == ["O", *(f"{p}-{c}" for c in classes for p in "BI")]


def test_oof_csv_holds_predicted_and_true_spans_of_the_held_out_documents(any_run):
    run = artifacts.RunPaths(any_run.root)
    docs = documents(any_run).set_index("id")
    folds = pd.read_csv(next((any_run.tmp / "folds").glob("*.csv")), dtype=str).set_index("id")["fold"]
    for fold in (0, 1):
        oof = pd.read_csv(run.oof_predictions(fold), dtype=str, keep_default_na=False)
        assert oof.columns.tolist() == ["id", "class", "predictionstring", "score", "source"]
        assert set(oof["source"]) == {"predicted", "true"}
        assert set(oof["id"]) <= set(folds.index[folds == str(fold)])
        true = oof[oof["source"] == "true"]
        held_out = docs.loc[folds.index[folds == str(fold)]]
        assert len(true) == held_out["spans"].map(len).sum()
        assert (true["score"] == "").all() and (oof.loc[oof["source"] == "predicted", "score"] != "").all()


def test_the_cv_report_gives_each_fold_and_each_class(any_run):
    report = any_run.stage("ensemble")[1]
    n = len(documents(any_run))
    assert f"CV overlap_f1 (out-of-fold, {n} documents, folds [0, 1]): " in report
    per_fold = next(line for line in report.splitlines() if line.startswith("per fold:"))
    assert " 0: " in per_fold and " 1: " in per_fold and "(n=" in per_fold
    per_class = next(line for line in report.splitlines() if line.startswith("per class:"))
    classes = CLASSES if any_run.train.suffix == ".csv" else BIO_CLASSES
    assert [part.split(":")[0] for part in per_class[len("per class: "):].split("  ")] == list(classes)


def test_ensemble_fits_class_rules_and_reports_the_honest_estimate(any_run):
    decoding = json.loads(any_run.submission.with_suffix(".decoding.json").read_text())
    assert list(decoding) == ["spans.decode.class_rules"]
    rules = decoding["spans.decode.class_rules"]
    classes = CLASSES if any_run.train.suffix == ".csv" else BIO_CLASSES
    assert [r.split(":")[0] for r in rules] == list(classes)
    assert all(int(r.split(":")[1]) >= 1 and 0 <= float(r.split(":")[2]) <= 1 for r in rules)
    report = any_run.stage("ensemble")[1]
    assert "decoding rules fit on the out-of-fold blend (spans.decode.class_rules)" in report
    assert "when each fold is decoded by rules fit on the other folds (the honest gain: " in report
    for rule in rules:
        cls, words, prob = rule.split(":")
        assert f"  {cls}: " in report and f"min_words {words}, min_mean_prob {prob}" in report


def test_the_submission_is_long_format_of_the_test_documents_contiguous_spans(any_run):
    submission = pd.read_csv(any_run.submission, dtype=str, keep_default_na=False)
    assert submission.columns.tolist() == ["id", "class", "predictionstring"] and len(submission) > 0
    if any_run.test.is_dir():
        test = read_feedback_test(any_run.test)
    else:
        test = read_bio_file(any_run.test, 4)
    n_words = test.set_index("id")["text"].str.split().map(len)
    assert set(submission["id"]) <= set(test["id"])
    classes = CLASSES if any_run.train.suffix == ".csv" else BIO_CLASSES
    assert set(submission["class"]) <= set(classes)
    for row in submission.itertuples():
        words = [int(w) for w in row.predictionstring.split()]
        assert words == list(range(words[0], words[-1] + 1)) and 0 <= words[0] and words[-1] < n_words[row.id]
    assert not submission.duplicated(["id", "predictionstring"]).any()  # one label per word


def test_the_feedback_run_found_test_and_sample_beside_train_csv(spans_feedback_run):
    record = latest_test_outputs(spans_feedback_run.root)
    assert record.test_csv == str(spans_feedback_run.test)
    assert record.data["sample_submission"] == str(spans_feedback_run.sample)
    assert not any("data.test_csv" in o for o in spans_feedback_run.overrides)


def test_a_test_folder_is_hashed_by_its_files_names_and_contents(spans_feedback_run, tmp_path):
    from foldnlp.provenance import file_sha256

    record = latest_test_outputs(spans_feedback_run.root)
    assert record.test_sha256 == file_sha256(spans_feedback_run.test)
    copy = shutil.copytree(spans_feedback_run.test, tmp_path / "test")
    assert file_sha256(copy) == record.test_sha256  # where the folder is does not matter
    essay = next(copy.glob("*.txt"))
    essay.write_text(essay.read_text() + " more")
    changed = file_sha256(copy)
    essay.rename(essay.with_name("Z" + essay.name))
    assert len({record.test_sha256, changed, file_sha256(copy)}) == 3


def test_score_py_scores_the_bio_submission_against_the_test_file(spans_bio_run):
    run = spans_bio_run
    code, out, err = run_cli("score.py", "--config", run.config, *sets(run.overrides), run.submission, run.test,
                             "--quiet")
    assert code == 0, err[-2000:]
    truth = read_bio_file(run.test, 4)
    table = pd.DataFrame([(i, c, " ".join(map(str, range(a, b + 1)))) for i, spans in zip(truth["id"], truth["spans"])
                          for c, a, b in spans], columns=["id", "class", "predictionstring"])
    expected, _ = overlap_f1(table, pd.read_csv(run.submission, dtype=str, keep_default_na=False))
    assert out.startswith(f"overlap_f1 {expected:.4f} (higher is better)") and f"({len(truth)} ids)" in out


# ---- hostile inputs -------------------------------------------------------------------------------------------
def make_folds(layout, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("task: spans\n")
    return run_cli("make_folds.py", "--config", config, "--set", f"data.train_csv={layout / 'train.csv'}",
                   "--set", f"folds.folds_dir={tmp_path / 'folds'}", "--quiet")


def refused(code: int, err: str) -> str:
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture
def layout(spans_feedback_run, tmp_path):
    """A copy of the Feedback run's competition folder, to spoil."""
    return shutil.copytree(spans_feedback_run.train.parent, tmp_path / "competition")


def test_an_essay_without_its_file_is_named(layout, tmp_path):
    (layout / "train" / "E003TRAIN.txt").unlink()
    err = refused(*make_folds(layout, tmp_path)[::2])
    assert f"{layout / 'train.csv'}: 1 essay file(s) missing from {layout / 'train'}: E003TRAIN.txt" in err
    assert not (tmp_path / "folds").exists()


def test_overlapping_spans_are_named_with_their_essay_and_rows(layout, tmp_path):
    train = pd.read_csv(layout / "train.csv", dtype=str)
    first = train.iloc[0]
    clash = first.copy()
    clash["discourse_id"], clash["discourse_type"] = "99.0", "Support"
    clash["discourse_start"] = str(int(float(first["discourse_start"])) + 5)
    pd.concat([train, clash.to_frame().T], ignore_index=True).to_csv(layout / "train.csv", index=False)
    err = refused(*make_folds(layout, tmp_path)[::2])
    assert f"{layout / 'train.csv'}: 1 pair(s) of discourse rows overlap in words" in err
    assert f"id {first['id']}: row 1 (discourse_id 1.0) and row {len(train) + 1} (discourse_id 99.0) share" in err


def test_an_empty_test_folder_is_refused_by_infer_and_ensemble(spans_feedback_run, tmp_path):
    empty = tmp_path / "test"
    empty.mkdir()
    (empty / "notes.md").write_text("no essays here\n")
    before = sorted(p.name for p in (spans_feedback_run.root / "test").iterdir())
    code, _, err = run_cli("infer.py", "--run-dir", spans_feedback_run.root, "--test-csv", empty, "--quiet")
    assert f"{empty}: no essays (<id>.txt files) in this folder" in refused(code, err)
    code, _, err = run_cli("ensemble.py", "--experiments", spans_feedback_run.root, "--test-csv", empty,
                           "--sample-submission", spans_feedback_run.sample, "--out", tmp_path / "s.csv", "--quiet")
    assert f"{empty}: no essays (<id>.txt files) in this folder" in refused(code, err)
    assert sorted(p.name for p in (spans_feedback_run.root / "test").iterdir()) == before
    assert not (tmp_path / "s.csv").exists()
