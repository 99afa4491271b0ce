"""What a user meets at the command line: paths taken from where the command runs, settings checked before any
work, one summary line per fold, plain progress lines in logs, messages that name what exists."""

from pathlib import Path

import pytest

from foldnlp import cli
from helpers import main_of

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
    args = parsed_args("ensemble.py", [], monkeypatch)
    assert args.out == Path.cwd() / "outputs" / "submission.csv"
    assert parsed_args("train_fold.py", ["--fold", "0"], monkeypatch).config == Path.cwd() / "configs" / "default.yaml"
