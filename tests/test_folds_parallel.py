"""Folds in parallel (python -m foldnlp.folds_parallel): the tiny experiment's folds trained as two processes at
once end exactly as the session's serial train_fold.py runs of them (same seeds, data and thread count: training on
CPU is deterministic), --resume keeps finished folds, and the queue (more folds than slots, a fold that fails,
Ctrl-C) is checked with stand-in fold commands that start in milliseconds."""

import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from foldnlp import artifacts, test_outputs
from foldnlp.config import load_config
from foldnlp.folds_parallel import launcher, train_folds
from foldnlp.folds_parallel.__main__ import main
from foldnlp.folds_parallel.devices import Slot, parse_devices, slot_environment, threads_per_process
from helpers import ROOT, SAMPLE_CSV, TEST_CSV, logging_restored, parser_of, run_cli, sets, unexplained_flags

TIMING = ("elapsed_s", "windows_per_s")  # how fast, not what was learnt


def folds_parallel(*argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of python -m foldnlp.folds_parallel run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in history]


@pytest.fixture(scope="module")
def parallel(trained_run):
    """The session's tiny experiment trained again as "p", both folds at once (cpu:2), with the thread count of the
    in-process serial runs (conftest.trained_run), so that each fold must end exactly as there."""
    settings = trained_run.settings("p")
    threads = torch.get_num_threads()
    code, out, err = folds_parallel("--devices", "cpu:2", "--threads", threads, *sets(settings))
    return {"settings": settings, "code": code, "out": out, "err": err, "threads": threads,
            "paths": artifacts.RunPaths(trained_run.tmp / "outputs" / "p")}


def test_two_folds_at_once_end_exactly_as_serial_runs(parallel, trained_run):
    assert parallel["code"] == 0, parallel["err"][-3000:]
    p, a = parallel["paths"], artifacts.RunPaths(trained_run.root)
    assert p.trained_folds() == [0, 1]
    out = parallel["out"].splitlines()
    started = [i for i, line in enumerate(out) if ": started on cpu" in line]
    assert len(started) == 2 and started[1] < min(i for i, line in enumerate(out) if ": finished in" in line)
    for fold in (0, 1):
        assert f"fold {fold}: started on cpu, {parallel['threads']} thread(s) per process; log: " \
               f"{p.train_log(fold)}" in out
        mine, serial = (json.loads(run.metrics(fold).read_text()) for run in (p, a))
        assert any(line.startswith(f"fold {fold}: finished in ") and line.endswith(
            f"best jaccard {mine['jaccard']:.4f} at step {mine['best_step']}") for line in out), out
        assert (mine["jaccard"], mine["best_step"]) == (serial["jaccard"], serial["best_step"])
        assert without_timing(mine["history"]) == without_timing(serial["history"])
        np.testing.assert_array_equal(artifacts.load_scores(p.oof_scores(fold)).values,
                                      artifacts.load_scores(a.oof_scores(fold)).values)
        log = p.train_log(fold).read_text()
        assert log.startswith("# ") and f"--fold {fold}" in log.splitlines()[0]
        assert f"fold {fold}: best jaccard" in log  # train_fold.py's own summary line, in the fold's log
    assert "2 fold(s) finished in" in out[-1] and str(p.root) in out[-1]


def test_infer_and_ensemble_take_the_run_folder_as_usual(parallel, trained_run, tmp_path):
    test = ["--test-csv", TEST_CSV, "--sample-submission", SAMPLE_CSV]
    code, _, err = run_cli("infer.py", *sets(parallel["settings"]), *test)
    assert code == 0, err[-3000:]
    submission = tmp_path / "submission.csv"
    code, _, err = run_cli("ensemble.py", "--experiments", parallel["paths"].root, *test, "--out", submission)
    assert code == 0, err[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(submission), pd.read_csv(trained_run.submission))


def test_resume_keeps_finished_folds_and_neither_flag_is_refused_at_once(parallel):
    p = parallel["paths"]
    before = {fold: p.metrics(fold).read_bytes() for fold in (0, 1)}
    logs = {fold: p.train_log(fold).read_text() for fold in (0, 1)}
    code, out, err = folds_parallel("--devices", "cpu:2", *sets(parallel["settings"]))
    assert code == 2 and "fold(s) 0, 1 already finished" in err and "--resume" in err and "--overwrite" in err

    code, out, err = folds_parallel("--devices", "cpu:2", "--resume", *sets(parallel["settings"]))
    assert code == 0, err[-3000:]
    for fold in (0, 1):
        assert p.metrics(fold).read_bytes() == before[fold]
        best = json.loads(before[fold])
        assert f"fold {fold}: already finished, kept (best jaccard {best['jaccard']:.4f} at step " \
               f"{best['best_step']})" in out
    assert "started" not in out and "2 fold(s) finished" in out
    # kept as train_fold.py --resume keeps them: a finished fold trained with another config is refused, at once
    code, out, err = folds_parallel("--devices", "cpu:2", "--resume", *sets(parallel["settings"]),
                                    "--set", "train.lr=0.5")
    assert code == 2 and "fold 0 of" in err and "trained differently (config train.lr: 0.0001 → 0.5)" in err
    assert {fold: p.train_log(fold).read_text() for fold in (0, 1)} == logs  # no fold process started
    assert {fold: p.metrics(fold).read_bytes() for fold in (0, 1)} == before


@pytest.fixture
def three_folds(trained_run, tmp_path):
    """Settings of a 3-fold experiment whose fold file exists (stand-in fold commands never read it)."""
    settings = [*trained_run.settings("q"), f"output_dir={tmp_path / 'outputs'}", "folds.n_folds=3",
                f"folds.folds_dir={tmp_path / 'folds'}"]
    cfg = load_config(None, settings)
    fold_file = artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme)
    fold_file.parent.mkdir(parents=True)
    fold_file.write_text("id,fold\n")
    return settings, artifacts.RunPaths.of(cfg.output_dir, cfg.name)


def stand_in_folds(monkeypatch, scripts: dict[int, str], train_args: list | None = None) -> list:
    """Replace each fold's train_fold.py command with `python -c scripts[fold]` (its fold number in FOLD); returns
    the processes started, as they start; train_args collects the arguments train_fold.py would have had."""
    started = []
    real_start = launcher.start

    def command(fold, slot, args):
        if train_args is not None:
            train_args.append(args)
        return [sys.executable, "-c", f"FOLD = {fold}\n" + scripts[fold]]

    monkeypatch.setattr(launcher, "fold_command", command)

    def start(*args, **kwargs):
        started.append(real_start(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(launcher, "start", start)
    return started


FINISHES = """import json, os, pathlib
print("OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"], "CUDA_VISIBLE_DEVICES=" + os.environ["CUDA_VISIBLE_DEVICES"])
folder = pathlib.Path({root!r}) / f"fold{{FOLD}}"
(folder / "metrics.json").write_text(json.dumps({{"metric": "jaccard", "jaccard": 0.5 + FOLD / 100, "best_step": 3}}))
"""
FAILS = "import sys\nprint('loading the data')\nsys.exit('fold 0 went wrong')\n"


def test_more_folds_than_slots_queue_and_a_failed_fold_is_named_while_the_others_finish(three_folds, monkeypatch):
    settings, paths = three_folds
    finishes = FINISHES.format(root=str(paths.root))
    stand_in_folds(monkeypatch, {0: FAILS, 1: finishes, 2: finishes})
    code, out, err = folds_parallel("--devices", "cpu:2", *sets(settings))
    assert code == 1 and "error: fold(s) 0 failed" in err and "fold(s) 1, 2 finished" in err
    lines = out.splitlines()
    # two slots: folds 0 and 1 start at once, fold 2 only once one of them has ended
    assert [line.split(":")[0] for line in lines[:2]] == ["fold 0", "fold 1"] and "started" in lines[1]
    third = next(i for i, line in enumerate(lines) if line.startswith("fold 2: started"))
    assert any(": failed" in line or ": finished" in line for line in lines[2:third]), lines
    assert "fold 0: failed (exit 1) after" in out and f"fold 0 went wrong; log: {paths.train_log(0)}" in out
    assert "fold 1: finished in" in out and "best jaccard 0.5100 at step 3" in out
    assert "fold 2: finished in" in out and "best jaccard 0.5200 at step 3" in out
    # threads: the usable cores shared by the 2 processes that run at once; a CPU fold sees no GPU
    threads = threads_per_process(len(os.sched_getaffinity(0)), 2)
    assert f"OMP_NUM_THREADS={threads} CUDA_VISIBLE_DEVICES=\n" in paths.train_log(1).read_text()


def test_one_slot_runs_the_folds_one_after_the_other(three_folds, monkeypatch):
    settings, paths = three_folds
    stand_in_folds(monkeypatch, dict.fromkeys((0, 1, 2), FINISHES.format(root=str(paths.root))))
    code, out, err = folds_parallel("--devices", "cpu", "--folds", 2, 0, *sets(settings))
    assert code == 0, err
    events = [line.split(",")[0].split(" in ")[0] for line in out.splitlines()[:-1]]
    assert events == ["fold 2: started on cpu", "fold 2: finished", "fold 0: started on cpu", "fold 0: finished"]
    assert not paths.train_log(1).exists()


def test_overwrite_retrains_every_fold_and_drops_their_test_outputs_first(three_folds, trained_run, monkeypatch):
    settings, paths = three_folds
    shutil.copytree(trained_run.root / "test", paths.root / "test")  # test outputs of folds 0 and 1
    (key,) = paths.test_keys()
    for fold in (0, 1, 2):
        paths.fold_dir(fold).mkdir(parents=True, exist_ok=True)
        paths.train_log(fold).write_text("an earlier run\n")
    train_args = []
    stand_in_folds(monkeypatch, dict.fromkeys((0, 1, 2), FINISHES.format(root=str(paths.root))), train_args)
    code, out, err = folds_parallel("--devices", "cpu:2", "--overwrite", "--no-wandb", "--quiet", *sets(settings))
    assert code == 0, err
    # dropped by this process, one fold after the other, before the folds started (each fold's train_fold
    # --overwrite would rewrite the shared settings record at the same time)
    assert test_outputs.read_record(paths, key).folds == []
    assert not any(paths.test_dir(key).glob("fold*"))
    assert all("an earlier run" not in paths.train_log(k).read_text() for k in (0, 1, 2))  # a fresh log
    expected = ["--config", str(ROOT / "configs" / "default.yaml"), *sets(settings), *sets(["tracking.wandb=disabled"]),
                "--overwrite", "--quiet"]
    assert train_args == [expected] * 3


def test_ctrl_c_stops_every_running_fold_and_starts_no_other(three_folds, monkeypatch):
    settings, paths = three_folds
    waits = ("import sys, time\ntry:\n    print('ready', flush=True)\n    time.sleep(300)\nexcept KeyboardInterrupt:\n"
             "    print('stopped', 'by SIGINT', flush=True)\n    sys.exit(130)\n")
    started = stand_in_folds(monkeypatch, dict.fromkeys((0, 1, 2), waits))
    real_write = train_folds.write

    def ctrl_c_once_both_run(message: str) -> None:
        real_write(message)
        if message.startswith("fold 1: started"):  # both folds ready to catch it: Ctrl-C now
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(
                    "ready" in paths.train_log(k).read_text().splitlines() for k in (0, 1)):
                time.sleep(0.01)
            raise KeyboardInterrupt

    monkeypatch.setattr(train_folds, "write", ctrl_c_once_both_run)
    code, out, err = folds_parallel("--devices", "cpu:2", *sets(settings))
    assert code == 130 and "interrupted: run the same command with --resume" in err
    assert "fold 0: stopped" in out and "fold 1: stopped" in out and "fold 2: not started" in out
    assert len(started) == 2 and [p.returncode for p in started] == [130, 130]  # each ended by itself on SIGINT
    assert all("stopped by SIGINT" in paths.train_log(k).read_text() for k in (0, 1))


def test_bad_devices_and_fold_choices_exit_with_status_2(three_folds):
    settings, _ = three_folds
    for devices, message in [("cpu:0", "cpu:N needs"), ("0,a", "expected GPU numbers"), ("0,1+0", "GPU 0 named")]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_status:
            main(["--devices", devices, *sets(settings)])
        assert exit_status.value.code == 2 and "usage:" in err.getvalue() and message in err.getvalue(), devices
    code, _, err = folds_parallel("--devices", "0,63", *sets(settings))  # more GPUs than any machine here has
    assert code == 2 and "--devices names GPU 63" in err and "cpu:N" in err
    code, _, err = folds_parallel("--devices", "cpu:2", "--folds", 1, 3, *sets(settings))
    assert code == 2 and "--folds 1 3: each fold once, from 0 to 2" in err
    code, _, err = folds_parallel("--devices", "cpu:2", "--resume", "--overwrite", *sets(settings))
    assert code == 2 and "contradict" in err


def test_devices_spec_slots_environment_and_commands(monkeypatch):
    assert parse_devices("cpu:3") == [Slot()] * 3 and parse_devices("CPU") == [Slot()]
    assert parse_devices("0,1,2") == [Slot((0,)), Slot((1,)), Slot((2,))]
    assert parse_devices("0+1,2+3") == [Slot((0, 1)), Slot((2, 3))]
    assert [s.processes for s in parse_devices("0+1+2,3")] == [3, 1]
    assert Slot((2, 3)).describe() == "cuda:2+cuda:3 (DDP, 2 processes)" and Slot((1,)).describe() == "cuda:1"
    assert [threads_per_process(16, n) for n in (1, 3, 4, 32)] == [16, 5, 4, 1]
    # GPU numbers index an inherited CUDA_VISIBLE_DEVICES: slot 1 of a job given GPUs 4 and 6 is GPU 6
    assert slot_environment(Slot((1,)), 4, "4,6") == {"CUDA_VISIBLE_DEVICES": "6", "OMP_NUM_THREADS": "4",
                                                      "MKL_NUM_THREADS": "4"}
    assert slot_environment(Slot((0, 1)), 2, None)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert slot_environment(Slot(), 2, "0")["CUDA_VISIBLE_DEVICES"] == ""
    args = ["--config", "c.yaml", "--resume"]
    single = launcher.fold_command(2, Slot((0,)), args)
    assert single == [sys.executable, str(launcher.TRAIN_SCRIPT), *args, "--fold", "2"]
    group = launcher.fold_command(2, Slot((0, 1)), args)
    assert group[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert group[5:] == single[1:] and Path(group[5]).name == "train_fold.py" and Path(group[5]).is_file()


def test_help_explains_every_flag(monkeypatch):
    parser = parser_of(main, monkeypatch)
    assert unexplained_flags(parser) == []
    assert {"--devices", "--folds", "--threads", "--resume", "--overwrite", "--no-wandb", "--quiet"} <= set(
        parser._option_string_actions)
