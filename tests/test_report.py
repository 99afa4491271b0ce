"""python -m foldnlp.report: the leaderboard's rows (CV as ensemble.py computes it, per fold, spread, per group,
speed, the settings that differ, partial CVs), separate tables per task, its PNG plots, the public-board scatter,
bad folders; and the tasks' per-group and per-bucket scores."""

import contextlib
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from foldnlp.config import from_dict
from foldnlp.ensembling import average_scores
from foldnlp.report.__main__ import main as report_main
from foldnlp.runs import open_run
from foldnlp.steps.ensemble import Experiment, members_oof
from foldnlp.tasks import get_task
from foldnlp.tasks.regress.task import RAW
from helpers import ROOT, logging_restored, parser_of, run_week, unexplained_flags

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_PIXELS = (550, 900)  # plots.FIGURE_SIZE at plots.DPI, rows × columns


def run_report(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = report_main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def experiments(trained_run, single_label_run, tmp_path_factory):
    """outputs/a: a copy of the shared tiny QA run (2 epochs); outputs/b: the same experiment trained for 1 epoch
    through run_week; outputs/b_partial: a copy of b with fold 1 unfinished and fold 0's metrics.json as an older
    foldnlp wrote it (no window count); and the tiny classification run, of another task."""
    tmp = tmp_path_factory.mktemp("report")
    outputs = tmp / "outputs"
    shutil.copytree(trained_run.root, outputs / "a")
    overrides = [*trained_run.settings("b"), f"output_dir={outputs}", f"folds.folds_dir={tmp / 'folds'}",
                 "train.epochs=1"]
    stages = run_week(ROOT / "configs" / "default.yaml", overrides, outputs / "b", tmp / "submission.csv")
    shutil.copytree(outputs / "b", outputs / "b_partial")
    (outputs / "b_partial" / "fold1" / "metrics.json").unlink()
    metrics_path = outputs / "b_partial" / "fold0" / "metrics.json"
    older = json.loads(metrics_path.read_text())
    for key in ("train_windows", "steps", "steps_per_epoch"):
        del older[key]
    metrics_path.write_text(json.dumps(older))
    return {"outputs": outputs, "classify": single_label_run.root, "ensemble_b": stages[-1][2], "tmp": tmp}


def ensemble_cv(folders, weights=None) -> float:
    """The CV ensemble.py computes for a blend of these run folders (equal weights)."""
    members = [Experiment(str(f), run := open_run(f), run.paths, None, run.provenance(run.folds[0])) for f in folders]
    task = get_task(members[0].cfg)
    train, _, member_oof = members_oof(task, members)
    oof = average_scores(member_oof, weights)
    return task.score(train, task.decode(train, oof))


@pytest.fixture(scope="module")
def report(experiments):
    outputs, out_dir = experiments["outputs"], experiments["tmp"] / "reports"
    code, out, err = run_report(outputs / "a", outputs / "b", outputs / "b_partial", experiments["classify"],
                                experiments["tmp"] / "submission.csv", "--out-dir", out_dir)
    assert code == 0, err[-3000:]
    return out, err, out_dir


def test_leaderboard_rows_hold_cv_folds_spread_groups_speed_and_differing_settings(experiments, report):
    outputs = experiments["outputs"]
    out, err, out_dir = report
    board = pd.read_csv(out_dir / "leaderboard.csv", dtype={"train.epochs": str})
    qa = board[board["table"] == 1].set_index("experiment")
    assert set(qa.index) == {"a", "b", "b_partial"} and set(qa["task"]) == {"qa"} and set(qa["metric"]) == {"jaccard"}
    assert qa["cv"].is_monotonic_decreasing  # jaccard: higher is better, best first
    for name in ("a", "b"):
        assert qa.loc[name, "cv"] == ensemble_cv([outputs / name])  # the same computation, to the last bit
        assert not qa.loc[name, "partial"] and qa.loc[name, "folds"] == "0 1"
        folds = [json.loads((outputs / name / f"fold{k}" / "metrics.json").read_text()) for k in (0, 1)]
        for k, metrics in enumerate(folds):  # each fold's OOF scores as the fold's best evaluation did
            assert qa.loc[name, f"fold{k}"] == pytest.approx(metrics["jaccard"], rel=1e-12)
        scores = np.array([m["jaccard"] for m in folds])
        assert qa.loc[name, "fold_std"] == pytest.approx(scores.std())
        assert qa.loc[name, "fold_range"] == pytest.approx(np.ptp(scores))
        seconds = sum(m["history"][-1]["elapsed_s"] for m in folds)
        windows = sum(m["train_windows"] * m["steps"] / m["steps_per_epoch"] for m in folds)
        assert all(m["train_windows"] > 0 and m["steps"] == m["history"][-1]["step"] for m in folds)
        assert qa.loc[name, "train_s"] == pytest.approx(seconds)
        assert qa.loc[name, "windows_per_s"] == pytest.approx(windows / seconds)
        # Per language: the mean Jaccard of each language's questions, so weighted by their counts they give the CV.
        languages = pd.read_csv(ROOT / "input" / "train.csv")["language"].value_counts()
        assert sum(n * qa.loc[name, f"jaccard[{lang}]"] for lang, n in languages.items()) / languages.sum() \
            == pytest.approx(qa.loc[name, "cv"])
    assert f"CV Jaccard (out-of-fold, 786 questions, folds [0, 1]): {qa.loc['b', 'cv']:.4f}" \
        in experiments["ensemble_b"]
    # The only setting that differs is the one changed (name and the fold file's folder are trivially different).
    settings = list(board.columns[list(board.columns).index("windows_per_s") + 1:])
    assert settings == ["train.epochs"]
    assert qa["train.epochs"].to_dict() == {"a": "2.0", "b": "1.0", "b_partial": "1.0"}
    partial = qa.loc["b_partial"]
    assert partial["partial"] and partial["folds"] == "0" and partial["scored"] < partial["n_train"] == 786
    assert partial["cv"] == partial["fold0"] == qa.loc["b", "fold0"]
    assert np.isnan(partial["fold1"]) and np.isnan(partial["fold_std"]) and np.isnan(partial["windows_per_s"])
    # Another task: a table of its own, with its own per-class columns.
    (classify,) = board[board["table"] == 2].itertuples()
    assert (classify.task, classify.experiment) == ("classify", "d")
    assert classify.cv == ensemble_cv([experiments["classify"]])
    assert {"F1[neg]", "F1[pos]"} <= set(board.columns) and np.isnan(qa["F1[neg]"]).all()
    text = (out_dir / "leaderboard.md").read_text()
    assert text in out and "2 separate tables: experiments of different tasks, metrics or fold files" in text
    assert "## Table 1: qa: jaccard (higher is better)" in text and "## Table 2: classify: accuracy" in text
    assert f"| b_partial | {partial['cv']:.4f} (partial: {partial['scored']} of 786) | 0 |" in text
    assert "differing settings: train.epochs." in text and "| train.epochs |" in text
    assert "skipping" in err and "submission.csv: a file, not a run folder" in err


def test_plots_are_pngs_of_every_table(report):
    _, _, out_dir = report
    for number in (1, 2):
        for name in ("validation", "train_loss", "buckets"):
            path = out_dir / f"{name}-{number}.png"
            data = path.read_bytes()
            assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, path
            assert imread(path).shape[:2] == PLOT_PIXELS
            assert f"]({path.name})" in (out_dir / "leaderboard.md").read_text()
    assert not list(out_dir.glob("cv_vs_public*"))  # no --lb, no scatter


def test_public_board_adds_cv_of_each_blend_against_its_public_score(experiments, tmp_path):
    outputs = experiments["outputs"]
    lb = tmp_path / "lb.csv"
    pd.DataFrame({"submission": ["a alone", "a+b"], "experiments": [str(outputs / "a"), f"{outputs / 'a'} b"],
                  "public_score": ["0.02", "0.03"]}).to_csv(lb, index=False)
    code, out, err = run_report(outputs / "a", outputs / "b", "--lb", lb, "--out-dir", tmp_path / "r")
    assert code == 0, err[-3000:]
    path = tmp_path / "r" / "cv_vs_public.png"  # one table: no number in the names
    assert path.read_bytes().startswith(PNG_SIGNATURE) and imread(path).shape[:2] == PLOT_PIXELS
    blend = ensemble_cv([outputs / "a", outputs / "b"])
    assert f"| a alone | a | {ensemble_cv([outputs / 'a']):.4f} | 0.0200 |" in out
    assert f"| a+b | a b | {blend:.4f} | 0.0300 |" in out  # "b" matched by its folder's name
    lb.write_text(f"submission,experiments,public_score\nx,{outputs / 'b_partial'},0.1\n")
    code, _, err = run_report(outputs / "a", "--lb", lb, "--out-dir", tmp_path / "r")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: --lb row 2 (x): {outputs / 'b_partial'} is not among the reported run folders; add it to the "
        "command line")
    lb.write_text("submission,experiments,public_score\nx,a,high\n")
    code, _, err = run_report(outputs / "a", "--lb", lb, "--out-dir", tmp_path / "r")
    assert code == 2 and "column 'public_score' must hold numbers" in err and "row 1" in err


def test_a_folder_that_is_not_a_run_folder_is_refused_by_name(experiments, tmp_path):
    stray = tmp_path / "notes"
    stray.mkdir()
    code, out, err = run_report(experiments["outputs"] / "a", stray, "--out-dir", tmp_path / "r")
    assert code == 2 and out == ""
    assert err.strip() == (f"error: {stray} is not a run folder (no config.yaml; a run folder is "
                           "<output_dir>/<name>/ as train_fold.py writes it)")
    assert not (tmp_path / "r").exists()


def test_every_flag_is_explained_by_help(monkeypatch):
    parser = parser_of(report_main, monkeypatch)
    assert parser.prog == "python -m foldnlp.report"
    assert unexplained_flags(parser) == []


def test_spans_score_each_class_and_bucket_by_class():
    task = get_task(from_dict({"task": "spans", "data": {"train_csv": "x.txt"}, "spans": {"classes": ["A", "B"]}}))
    examples = pd.DataFrame({"id": ["d1", "d2"], "text": ["w " * 10, "w " * 10],
                             "spans": [[("A", 0, 3), ("B", 5, 7)], [("A", 2, 4)]]})
    predictions = pd.DataFrame({"id": ["d1", "d2"], "class": ["A", "A"], "predictionstring": ["0 1 2 3", "7 8"]})
    groups = task.score_by_group(examples, predictions)
    assert (groups.by, groups.measure, groups.higher_is_better) == ("class", "overlap F1", True)
    # A: one of two true spans found by one of two predictions (F1 0.5); B: none predicted.
    assert groups.table.to_dict("list") == {"group": ["A", "B"], "n": [2, 1], "score": [0.5, 0.0]}
    assert task.score_by_bucket(examples, predictions).table.equals(groups.table)


def test_classify_scores_f1_per_class_and_recall_per_true_class(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"id": list("abcd"), "text": "x", "label": ["x", "x", "y", "z"]}).to_csv(path, index=False)
    task = get_task(from_dict({"task": "classify", "data": {"train_csv": str(path)},
                               "classify": {"classes": ["x", "y", "z"]}}))
    examples = task.read_train()
    # Predicted x, y, y, y: x has recall 1/2 and F1 2/3; y recall 1, F1 1/2; z recall 0, F1 0.
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3]])
    predictions = pd.DataFrame({"id": list("abcd"), **{f"prob_{c}": probs[:, j] for j, c in enumerate("xyz")}})
    f1 = task.score_by_group(examples, predictions)
    assert (f1.by, f1.measure) == ("class", "F1") and f1.table["n"].tolist() == [2, 1, 1]
    assert f1.table["score"].tolist() == pytest.approx([2 / 3, 1 / 2, 0.0])
    recall = task.score_by_bucket(examples, predictions)
    assert recall.measure == "recall" and recall.table["score"].tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_regress_scores_rmse_per_target_and_per_quantile_bin(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"id": list("abcd"), "text": "x", "target": ["1", "2", "3", "4"]}).to_csv(path, index=False)
    task = get_task(from_dict({"task": "regress", "data": {"train_csv": str(path)}, "regress": {"target_bins": 2}}))
    examples = task.read_train()
    raw = np.array([1.0, 3.0, 3.0, 2.0])  # errors 0, 1, 0, -2
    predictions = pd.DataFrame({"id": list("abcd"), "target": raw, RAW + "target": raw})
    groups = task.score_by_group(examples, predictions)
    assert (groups.by, groups.measure, groups.higher_is_better) == ("target", "RMSE", False)
    assert groups.table["score"].tolist() == pytest.approx([np.sqrt(5 / 4)])
    buckets = task.score_by_bucket(examples, predictions)
    assert buckets.table["group"].tolist() == ["q1", "q2"] and buckets.table["n"].tolist() == [2, 2]
    assert buckets.table["score"].tolist() == pytest.approx([np.sqrt(1 / 2), np.sqrt(4 / 2)])


def test_qa_buckets_by_context_length_with_fixed_labels(trained_run):
    task = get_task(open_run(trained_run.root).cfg)
    examples = task.read_train().head(40)
    predictions = pd.DataFrame({"id": examples["id"], "prediction": examples["answer_text"]})  # all right
    buckets = task.score_by_bucket(examples, predictions)
    assert buckets.by == "context length (characters)" and (buckets.table["score"] == 1.0).all()
    assert set(buckets.table["group"]) <= {"<1k", "1k-2k", "2k-5k", "5k-10k", "10k-20k", "≥20k"}
    assert buckets.table["n"].sum() == 40
    lengths = examples["context"].str.len()
    assert buckets.table.set_index("group")["n"].get("≥20k", 0) == (lengths >= 20_000).sum()


def test_the_markdown_table_shows_a_searched_float_short_and_other_settings_as_they_are():
    from foldnlp.report.leaderboard import _shown_setting

    assert _shown_setting("0.00019560129439418058") == "0.0001956" and _shown_setting("1e-06") == "1e-06"
    assert [_shown_setting(t) for t in ("256", "-3", "linear", "null", "[a, b]")] == ["256", "-3", "linear", "null",
                                                                                      "[a, b]"]
