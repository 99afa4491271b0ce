"""Test helpers: paths, the root CLIs run in-process through their main(argv), and the tiny run's settings."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TEST_CSV, SAMPLE_CSV = FIXTURES / "chaii_test.csv", FIXTURES / "chaii_sample_submission.csv"


def main_of(script: str):
    """main(argv) of a root CLI script (make_folds.py, train_fold.py, infer.py, ensemble.py)."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@contextlib.contextmanager
def logging_restored():
    """A CLI's main() points the root logger at the stream of the moment (a redirected or captured one): put the
    root logger back afterwards, so that later tests do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:], root.level = handlers, level


def run_cli(script: str, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a root CLI run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main_of(script)([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def kill_seed() -> int:
    """The seed of a test's random kill points: KILL_SEED when set (to replay a failure), else a fresh one. It is
    printed (pytest shows it with the output of a failing test) and belongs in the test's assertion messages."""
    seed = int(os.environ.get("KILL_SEED", random.randrange(2**32)))
    print(f"kill points drawn with KILL_SEED={seed}")
    return seed


def latest_test_outputs(folder: Path):
    """The settings record of the most recent test outputs in a run folder (or an infer.py --out-dir)."""
    from foldnlp import artifacts, test_outputs

    found = test_outputs.records(artifacts.RunPaths(Path(folder)))
    assert found, f"no recorded test outputs in {folder}"
    return found[-1]


def sets(overrides: list[str]) -> list[str]:
    """--set KEY=VALUE pairs for a CLI."""
    return [a for o in overrides for a in ("--set", o)]


def tiny_settings(tmp: Path, model_dir: Path, name: str, external: Path) -> list[str]:
    """The tiny experiment every run-level test shares: 2 folds of 40 training rows plus a little external data,
    2 epochs of 96-token windows, dropout on (so that torch's RNG matters for the determinism checks), the
    training state saved at every step (for the kill/resume check)."""
    return [f"name={name}", f"output_dir={tmp / 'outputs'}", f"folds.folds_dir={tmp / 'folds'}",
            f"model.name_or_path={model_dir}", "model.dropout=0.1", "folds.n_folds=2", "data.max_train_examples=40",
            f"qa.external_squad=[english:{external}]", "qa.max_question_tokens=32", "features.max_len=96",
            "features.doc_stride=32",
            "train.epochs=2", "train.batch_size=4", "train.evals_per_epoch=2", "train.eval_start_epoch=0",
            "runtime.save_every_steps=1", "tracking.wandb=disabled"]


def small_external_squad(path: Path) -> Path:
    """The first paragraphs of the bundled English XQuAD (ids shared with the Hindi training questions)."""
    document = json.loads((ROOT / "input" / "external" / "xquad.en.json").read_text(encoding="utf-8"))
    first = document["data"][0]
    path.write_text(json.dumps({"version": document.get("version", "1.1"),
                                "data": [{**first, "paragraphs": first["paragraphs"][:3]}]}), encoding="utf-8")
    return path


def run_week(config: Path, overrides: list[str], run_dir: Path, submission: Path) -> list[tuple[str, int, str, str]]:
    """make_folds → train_fold (folds 0 and 1) → infer → ensemble of a 2-fold tiny experiment through the CLIs
    in-process, each stage asserted to exit 0; returns (stage, exit status, stdout, stderr) of each."""
    stages = []
    for stage, script, argv in [("make_folds", "make_folds.py", []), ("fold 0", "train_fold.py", ["--fold", 0]),
                                ("fold 1", "train_fold.py", ["--fold", 1]), ("infer", "infer.py", []),
                                ("ensemble", "ensemble.py", ["--experiments", run_dir, "--out", submission])]:
        common = ["--config", config, *sets(overrides)] if script != "ensemble.py" else []
        stages.append((stage, *run_cli(script, *common, *argv)))
        assert stages[-1][1] == 0, f"{stage}\n{stages[-1][2][-2000:]}\n{stages[-1][3][-4000:]}"
    return stages


def parser_of(main, monkeypatch):
    """The argparse parser a CLI's main([]) builds, caught at parse_args (nothing runs)."""
    import argparse

    parsers = []

    def capture(self, *args, **kwargs):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        main([])
    (parser,) = parsers
    return parser


def unexplained_flags(parser) -> list:
    """The parser's arguments whose help is empty."""
    return [a.option_strings or a.dest for a in parser._actions if not (a.help or "").strip()]


def stop_at_step(args: list[str], env: dict, state_json: Path, step: int, rng: random.Random, *,
                 stop_signal: int = signal.SIGKILL) -> None:
    """Start args (a training command, run with --quiet), and send it stop_signal at a random moment after its saved
    training state reaches `step` (maybe mid-save). SIGKILL: a crash; SIGTERM to a launcher: a cluster's preemption,
    which torchrun passes on to its processes. The command runs in a session of its own, so whatever is left of it
    at the end is killed with its whole process group."""
    # --quiet: a pipe left unread would fill with progress bars and stall the run
    proc = subprocess.Popen([*args, "--quiet"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(state_json.read_text())["position"]["step"] >= step:
                    break
            except (OSError, ValueError, KeyError):
                pass  # not written yet
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        assert proc.poll() is None, f"the run ended before step {step}:\n{proc.stderr.read()[-3000:]}"
        proc.send_signal(stop_signal)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
