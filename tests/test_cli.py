"""What a user meets at the command line: paths taken from where the command runs, settings checked before any
work, one summary line per fold, plain progress lines in logs, messages that name what exists."""

import io
import shutil
from pathlib import Path

import pytest

from foldnlp import cli
from foldnlp.artifacts import RunPaths
from foldnlp.errors import InputError
from foldnlp.progress import Progress
from helpers import SAMPLE_CSV, TEST_CSV, main_of, run_cli, sets

# Every path flag of every command, with a relative value; each must come out resolved against the directory the
# command was run in.
PATH_FLAGS = {
    "make_folds.py": (["--config", "exp/x.yaml"], {"config": "exp/x.yaml"}),
    "train_fold.py": (["--config", "exp/x.yaml", "--fold", "0"], {"config": "exp/x.yaml"}),
    "infer.py": (["--config", "x.yaml", "--test-csv", "data/test.csv", "--sample-submission", "data/s.csv"],
                 {"config": "x.yaml", "test_csv": "data/test.csv", "sample_submission": "data/s.csv"}),
    "ensemble.py": (["--experiments", "outputs/a", "../b", "--test-csv", "t.csv", "--sample-submission", "s.csv",
                     "--out", "sub/submission.csv"],
                    {"experiments": ["outputs/a", "../b"], "test_csv": "t.csv", "sample_submission": "s.csv",
                     "out": "sub/submission.csv"}),
    "kaggle build": (["build", "--experiments", "outputs/a", "--competition", "c", "--user", "u", "--out",
                      "kernels/check", "--requirements", "req.txt"],
                     {"experiments": ["outputs/a"], "out": "kernels/check", "requirements": "req.txt"}),
    "kaggle local-run": (["local-run", "--bundle", "kernels/check", "--test-csv", "t.csv", "--sample-submission",
                          "s.csv", "--workdir", "kaggle-local"],
                         {"bundle": "kernels/check", "test_csv": "t.csv", "sample_submission": "s.csv",
                          "workdir": "kaggle-local"}),
    "kaggle budget": (["budget", "--experiments", "outputs/a", "--test-csv", "t.csv"],
                      {"experiments": ["outputs/a"], "test_csv": "t.csv"}),
}


def parsed_args(command: str, argv: list[str], monkeypatch):
    """The namespace a command's parser gives for argv (the command itself does not run)."""
    seen = []
    monkeypatch.setattr(cli, "run", lambda main, p, argv=None: seen.append(p.parse_args(argv)) or 0)
    if command.startswith("kaggle "):
        from foldnlp.kaggle.__main__ import main
    else:
        main = main_of(command)
    assert main(argv) == 0
    return seen[0]


@pytest.mark.parametrize("command", PATH_FLAGS)
def test_every_path_flag_is_taken_from_the_directory_the_command_runs_in(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, expected = PATH_FLAGS[command]
    args = parsed_args(command, argv, monkeypatch)
    here = Path.cwd()
    for name, relative in expected.items():
        want = [Path(here.joinpath(r).resolve()) for r in relative] if isinstance(relative, list) else \
            here.joinpath(relative).resolve()
        assert getattr(args, name) == want, (command, name)


def test_path_defaults_are_taken_from_the_directory_the_command_runs_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from foldnlp.steps.ensemble import default_out

    args = parsed_args("ensemble.py", ["--experiments", "runs/x"], monkeypatch)
    assert args.experiments == [Path.cwd() / "runs" / "x"] and args.out is None
    assert default_out(args.experiments[0]) == Path.cwd() / "runs" / "submission.csv"  # --out's default
    assert parsed_args("train_fold.py", ["--fold", "0"], monkeypatch).config == Path.cwd() / "configs" / "default.yaml"


class Stream(io.StringIO):
    """A captured stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def plain_lines(total: int, steps: int, **kw) -> list[str]:
    stream = Stream(tty=False)
    with Progress(total, "train", "step", stream=stream, **kw) as bar:
        for _ in range(steps):
            bar.update(1)
            bar.set_postfix(loss="4.2")
    assert "\r" not in stream.getvalue()
    return stream.getvalue().splitlines()


def test_without_a_terminal_progress_is_a_plain_line_per_tenth_of_the_total():
    lines = plain_lines(100, 100)
    assert [line.split()[1] for line in lines] == [f"{n}/100" for n in range(10, 101, 10)]
    assert lines[-1].startswith("train: 100/100 step (100 %) in ") and lines[-1].endswith("step/s, loss=4.2")
    assert [line.split()[1] for line in plain_lines(7, 7)] == [f"{n}/7" for n in range(1, 8)]  # fewer steps than 10
    assert [line.split()[1] for line in plain_lines(100, 55, initial=35)] == ["40/100", "50/100", "60/100",
                                                                             "70/100", "80/100", "90/100"]
    assert plain_lines(100, 95)[-1].split()[1] == "95/100"  # stopped early: where it stopped is said at close
    assert plain_lines(100, 100, transient=True) == [] and plain_lines(100, 100, enabled=False) == []


def test_a_rewound_progress_says_again_the_tenths_it_passes_again():
    """A revert to a saved training state (training_guard.py) takes the loop back."""
    stream = Stream(tty=False)
    with Progress(10, "train", "step", stream=stream) as bar:
        for step in range(1, 9):  # steps 1-4, back to 2, then steps 3-5
            if step == 5:
                bar.rewind(2)
            else:
                bar.update(1)
    assert [line.split()[1] for line in stream.getvalue().splitlines()] == \
        ["1/10", "2/10", "3/10", "4/10", "3/10", "4/10", "5/10"]
    terminal = Stream(tty=True)
    with Progress(10, "train", "step", stream=terminal) as bar:
        bar.update(6)
        bar.rewind(3)
        assert bar._bar.n == 3


def test_in_a_terminal_progress_is_a_bar():
    stream = Stream(tty=True)
    with Progress(10, "train", "step", stream=stream) as bar:
        bar.update(10)
    assert "\r" in stream.getvalue() and "10/10" in stream.getvalue()


def test_training_and_inference_logs_hold_plain_lines_not_bars(trained_run):
    """The tiny run's CLIs wrote to captured streams, as into a log file: no carriage returns, no bar of Hugging
    Face's, ten progress lines per fold trained and none for the evaluations within it."""
    stages = {stage: (out, err) for stage, _, out, err in trained_run.stages}
    for stage, (out, err) in stages.items():
        assert "\r" not in out + err and "Loading weights" not in err, stage
    train_lines = [line for line in stages["train fold 0"][1].splitlines() if line.startswith("train: ")]
    assert len(train_lines) == 10 and " (100 %) in " in train_lines[-1], train_lines
    assert "eval:" not in stages["train fold 0"][1]
    assert [line.split(":")[0] for line in stages["infer"][1].splitlines() if "example (" in line] == \
        ["fold 0", "fold 1"]


def test_each_fold_summary_is_printed_once(trained_run):
    for stage, _, out, err in trained_run.stages:
        if stage.startswith("train fold "):
            fold = stage.split()[-1]
            assert (out + err).count(f"fold {fold}: best jaccard") == 1, stage
            assert f"outputs in {trained_run.root / f'fold{fold}'}" in out


def test_a_stride_that_cannot_work_fails_before_any_work(trained_run):
    """max_len 96 and --doc-stride 92: the config allows it (92 < 96), no window has room for it beside a question.
    Refused in one line before a model is loaded, a bar drawn, or an output replaced or deleted."""
    root = trained_run.tmp / "outputs" / "late_stride"
    shutil.copytree(trained_run.root, root)
    (root / "fold1" / "metrics.json").unlink()  # only fold 0 finished: --overwrite is not stopped by fold 1
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, out, err = run_cli("infer.py", *sets(trained_run.settings("late_stride")), "--test-csv", TEST_CSV,
                             "--sample-submission", SAMPLE_CSV, "--doc-stride", 92, "--folds", 0)
    assert code == 2 and err.startswith("error: features.doc_stride=92 cannot work with features.max_len=96")
    assert err.count("\n") == 1 and out == "", err  # nothing logged or drawn before it: no model was loaded
    code, out, err = run_cli("train_fold.py", *sets(trained_run.settings("late_stride")), "--fold", 0, "--overwrite",
                             "--set", "features.doc_stride=92")
    assert code == 2 and "error: features.doc_stride=92 cannot work" in err and "train:" not in err
    assert "loaded" not in err and out == ""
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # fold 0's outputs kept


def test_infer_names_the_folds_there_are(trained_run):
    for folds, message in (([5], "has no fold 5 (trained folds: 0, 1): pass --folds with trained ones, or train it "
                                  "first (train_fold.py --fold 5)"),
                           ([0, 7, 5], "has no fold 7, 5 (trained folds: 0, 1)"),
                           ([1, 1], "--folds 1 1: fold(s) 1 named more than once")):
        code, out, err = run_cli("infer.py", *sets(trained_run.overrides), "--test-csv", TEST_CSV,
                                 "--sample-submission", SAMPLE_CSV, "--folds", *folds)
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_folds_with_a_checkpoint_only_are_usable(tmp_path):
    """A Kaggle kernel's run folder holds each fold's checkpoint and no metrics.json."""
    run = RunPaths(tmp_path / "run")
    run.model_dir(0).mkdir(parents=True)
    assert run.folds_to_use([0]) == [0]
    with pytest.raises(InputError, match=r"has no fold 1 \(trained folds: none\)"):
        run.folds_to_use([0, 1])
    with pytest.raises(InputError, match="has no trained fold"):
        run.folds_to_use()


def test_counts_below_one_are_refused_with_the_flag_named(capsys):
    with pytest.raises(SystemExit) as refused:
        main_of("infer.py")(["--batch-size", "0"])
    assert refused.value.code == 2 and "argument --batch-size: must be at least 1, got 0" in capsys.readouterr().err
