"""Hyper-parameter search (python -m foldnlp.search): the space file's checks, a tiny search end to end with its best
config, pruning, resume after Ctrl-C and after a dead worker, and two worker processes sharing one SQLite study."""

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from foldnlp import artifacts
from foldnlp.config import load_config
from foldnlp.errors import InputError
from foldnlp.search import study as search_study
from foldnlp.search import trial as search_trial
from foldnlp.search.__main__ import main
from foldnlp.search.space import read_space
from foldnlp.search.study import run_search
from helpers import ROOT, logging_restored, run_cli, sets, small_external_squad, tiny_settings

CONFIG = ROOT / "configs" / "default.yaml"
SPACE = "train.lr: {low: 1.0e-4, high: 1.0e-3, log: true}\nfeatures.doc_stride: {choices: [24, 32]}\n"


@pytest.fixture(scope="module")
def experiment(tiny_model_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """The tiny QA experiment, smaller still (1 epoch of 16 rows and no external data, 6 folds for a small
    validation fold), with its folds made; tests give it their own output_dir."""
    tmp = tmp_path_factory.mktemp("search")
    settings = [*tiny_settings(tmp, tiny_model_dir, "s", small_external_squad(tmp / "xquad.json")),
                "train.epochs=1", "data.max_train_examples=16", "folds.n_folds=6", "qa.external_squad=[]"]
    code, _, err = run_cli("make_folds.py", "--config", CONFIG, *sets(settings))
    assert code == 0, err[-2000:]
    return tmp, settings


def search_argv(tmp: Path, settings: list[str], out: Path, trials: int, *extra) -> list[str]:
    space = tmp / "space.yaml"
    space.write_text(SPACE)
    return ["--config", CONFIG, "--space", space, "--trials", trials, "--folds", 0,
            *sets([*settings, f"output_dir={out}"]), *extra]


def study_of(out: Path, name: str = "s") -> optuna.Study:
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{out / name / 'search.db'}")
    return optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{out / name / 'search.db'}")


def search(argv: list) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of python -m foldnlp.search run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# ---- the space file -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("train.lrr: {low: 1.0e-5, high: 1.0e-4}", "train.lrr"),  # unknown key (the config's own refusal)
    ("train.lr: {low: 1.0e-4, high: 1.0e-5}", "must be below high"),
    ("train.lr: {low: 0.0, high: 1.0e-4, log: true}", "log range needs low > 0"),
    ("train.lr: {low: 1.0e-5, high: 1.0e-4, choices: [1.0e-5]}", "both choices and a range"),
    ("train.lr: {low: 1.0e-5}", "needs both low and high"),
    ("train.lr: {low: 1.0e-5, high: 1.0e-4, scale: log}", "unknown field(s) scale"),
    ("train.lr: {choices: []}", "non-empty list"),
    ("train.lr: {choices: [1, 1]}", "twice"),
    ("train.epochs: {low: 1.5, high: 3, int: true}", "whole-number"),
    ("features.max_len: {low: 128, high: 384}", "add int: true"),
    ("train.scheduler: {choices: [linear, step]}", "train.scheduler"),  # a value the config refuses
    ("features.max_len: {choices: [256, abc]}", "features.max_len"),  # the wrong type
    ("folds.seed: {choices: [1, 2]}", "cannot vary folds"),
    ("name: {choices: [a, b]}", "cannot vary name"),
    ("train.lr: 3.0e-5", "expected {choices"),
    ("[train.lr]", "must map config keys"),
])
def test_a_bad_space_is_refused_naming_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text + "\n")
    with pytest.raises(InputError) as caught:
        read_space(path, CONFIG)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_space_draws_typed_values_that_make_a_valid_config(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("train.lr: {low: 1e-5, high: 1.0e-4, log: true}\n"  # "1e-5" is text to YAML: taken as a number
                    "train.epochs: {low: 1, high: 3, int: true}\n"
                    "train.warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}\n"
                    "qa.external_squad: {choices: [[], ['english:input/external/xquad.en.json']]}\n")
    space = read_space(path, CONFIG)
    assert [d.key for d in space.dimensions] == ["train.lr", "train.epochs", "train.warmup_ratio",
                                                 "qa.external_squad"]
    params = {"train.lr": 3e-5, "train.epochs": 2, "train.warmup_ratio": 0.15,
              "qa.external_squad": '["english:input/external/xquad.en.json"]'}  # a list choice is stored as JSON text
    values = space.draw(optuna.trial.FixedTrial(params))
    assert values["qa.external_squad"] == ["english:input/external/xquad.en.json"]
    cfg = load_config(CONFIG, space.overrides(values))
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.warmup_ratio) == (3e-5, 2.0, 0.15)
    assert cfg.settings.external_squad == ["english:input/external/xquad.en.json"]
    assert space.values_of(params) == values


def test_the_qa_sample_space_fits_the_default_config():
    space = read_space(ROOT / "configs" / "search" / "space_qa.yaml", CONFIG)
    keys = {d.key for d in space.dimensions}
    assert {"train.lr", "train.head_lr", "train.weight_decay", "train.warmup_ratio", "train.adam_eps",
            "features.max_len", "features.doc_stride"} <= keys


# ---- searches -----------------------------------------------------------------------------------------------------

def test_a_search_trains_trials_as_run_folders_resumes_to_n_in_total_and_writes_the_best_config(experiment,
                                                                                                 tmp_path):
    tmp, settings = experiment
    out = tmp_path / "outputs"
    code, stdout, err = search(search_argv(tmp, settings, out, 2, "--pruner", "none", "--seed", 0))
    assert code == 0, err[-3000:]
    study = study_of(out)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in study.trials:
        run = artifacts.RunPaths(out / f"s-t{t.number}")
        assert run.trained_folds() == [0]
        metrics = json.loads(run.metrics(0).read_text())
        record = json.loads(run.trial_record.read_text())
        assert record["state"] == "complete" and record["trial"] == t.number and record["value"] == t.value
        assert t.value == metrics["jaccard"]  # one fold: the value is its best score
        assert metrics["provenance"]["config"]["train"]["lr"] == pytest.approx(t.params["train.lr"])
        assert f"trial {t.number} (train.lr=" in stdout  # one story line per trial
    assert "2 complete, 0 pruned, 0 failed" in stdout and "best trials by jaccard" in stdout

    # the same command with --trials 3 runs one more; again with 3, none
    code, stdout, err = search(search_argv(tmp, settings, out, 3, "--pruner", "none"))
    assert code == 0 and len(study_of(out).trials) == 3, err[-3000:]
    code, stdout, err = search(search_argv(tmp, settings, out, 3, "--pruner", "none"))
    assert code == 0 and len(study_of(out).trials) == 3 and "it has its 3 trials" in err

    best = study_of(out).best_trial
    cfg = load_config(out / "s" / "best.yaml")  # what train_fold.py --config would load
    assert cfg.name == "s-best" and cfg.train.lr == pytest.approx(best.params["train.lr"])
    assert cfg.features.doc_stride == best.params["features.doc_stride"]
    assert cfg.output_dir == str(out) and cfg.train.epochs == 1

    # another config under the same name and space is refused, not mixed into the study
    code, _, err = search(search_argv(tmp, settings, out, 4, "--set", "train.head_lr=0.002"))
    assert code == 2 and "train.head_lr: 0.001 → 0.002" in err


def test_the_pruner_stops_trials_at_an_evaluation_and_their_folders_say_so(experiment, tmp_path):
    tmp, settings = experiment
    out = tmp_path / "outputs"
    argv = search_argv(tmp, settings, out, 2)
    space = argv[argv.index("--space") + 1]
    # ThresholdPruner(lower=2): a jaccard is at most 1, so every trial is pruned at its first evaluation
    result = run_search(CONFIG, space, 2, folds=[0], overrides=[*settings, f"output_dir={out}"],
                        pruner=optuna.pruners.ThresholdPruner(lower=2.0), progress=False)
    study = study_of(out)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert "0 complete, 2 pruned, 0 failed" in result.summary and result.best_config is None
    for t in study.trials:
        run = artifacts.RunPaths(out / f"s-t{t.number}")
        record = json.loads(run.trial_record.read_text())
        assert record["state"] == "pruned" and record["evaluations"] == 1 and list(t.intermediate_values) == [1]
        assert run.trained_folds() == [] and not run.training_state(0).exists()  # not a finished fold, not resumable
        assert not run.model_dir(0).exists()


def test_a_trial_whose_settings_cannot_train_fails_and_the_search_goes_on(experiment, tmp_path):
    tmp, settings = experiment
    out = tmp_path / "outputs"
    space = tmp_path / "space.yaml"  # each value works with the config's others (max_len 96, doc_stride 32), not all
    space.write_text("features.max_len: {choices: [64, 96]}\nfeatures.doc_stride: {choices: [32, 80]}\n")
    overrides = [*settings, f"output_dir={out}"]
    storage = f"sqlite:///{out / 's' / 'search.db'}"
    (out / "s").mkdir(parents=True)
    study = optuna.create_study(storage=storage, study_name=f"s-{read_space(space, CONFIG, overrides).sha256[:8]}",
                                direction="maximize")
    study.enqueue_trial({"features.max_len": 64, "features.doc_stride": 80})
    result = run_search(CONFIG, space, 1, folds=[0], overrides=overrides, progress=False)
    assert "0 complete, 0 pruned, 1 failed" in result.summary and result.best_config is None
    record = json.loads((out / "s-t0" / "trial.json").read_text())
    assert record["state"] == "failed" and "features.doc_stride (80)" in record["error"]


def test_an_interrupted_search_and_a_dead_worker_resume_the_trial_from_its_saved_state(experiment, tmp_path,
                                                                                       monkeypatch):
    tmp, settings = experiment
    out = tmp_path / "outputs"
    # 3 evaluations or more: stopped after the 1st, then after the 2nd, the rest come after the last resume
    argv = search_argv(tmp, settings, out, 1, "--pruner", "none", "--set", "train.evals_per_epoch=3")
    monkeypatch.setattr(search_study, "HEARTBEAT_S", 1)
    monkeypatch.setattr(search_study, "GRACE_S", 1)
    real_train_fold = search_trial.train_fold
    stopped_at = []  # (step, score) of the evaluations the interruptions came after

    def stopping_at_first_evaluation(stop):
        def train_fold(cfg, fold, **kwargs):
            def on_evaluation(step, score):
                kwargs_on_evaluation(step, score)
                stopped_at.append((step, score))
                raise stop

            kwargs_on_evaluation = kwargs.pop("on_evaluation")
            return real_train_fold(cfg, fold, on_evaluation=on_evaluation, **kwargs)
        return train_fold

    # Ctrl-C in trial 0: it fails, marked interrupted, its training state kept
    monkeypatch.setattr(search_trial, "train_fold", stopping_at_first_evaluation(KeyboardInterrupt()))
    code, _, err = search(argv)
    assert code == 130 and "run the same command again to resume" in err
    assert json.loads((out / "s-t0" / "trial.json").read_text())["state"] == "interrupted"
    assert artifacts.RunPaths(out / "s-t0").training_state(0).is_dir()

    # run again: trial 1 retries it in its folder (renamed), and its worker dies (no tell: left RUNNING)
    monkeypatch.setattr(search_trial, "train_fold", stopping_at_first_evaluation(SystemExit(9)))
    with pytest.raises(SystemExit):
        search(argv)
    assert not (out / "s-t0").exists() and json.loads((out / "s-t1" / "trial.json").read_text())["resumes"] == 0
    assert [t.state.name for t in study_of(out).trials] == ["FAIL", "RUNNING"]

    # once its heartbeat is older than the grace period, the next run fails it and trial 2 finishes its training
    time.sleep(2.5)
    monkeypatch.setattr(search_trial, "train_fold", real_train_fold)
    code, stdout, err = search(argv)
    assert code == 0, err[-3000:]
    assert [t.state.name for t in study_of(out).trials] == ["FAIL", "FAIL", "COMPLETE"]
    run = artifacts.RunPaths(out / "s-t2")
    assert json.loads(run.trial_record.read_text())["resumes"] == 1 and not (out / "s-t1").exists()
    assert run.trained_folds() == [0]
    history = [(h["step"], h["jaccard"]) for h in json.loads(run.metrics(0).read_text())["history"]]
    assert history[:2] == stopped_at  # one training, continued twice: each run went on after the last's evaluation
    assert err.count("resumed from") == 1 and len(history) >= 3


def test_two_workers_share_one_sqlite_study(experiment, tmp_path):
    tmp, settings = experiment
    out = tmp_path / "outputs"
    argv = [sys.executable, "-m", "foldnlp.search", "--quiet", "--pruner", "none",
            *map(str, search_argv(tmp, settings, out, 4))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    (out / "s").mkdir(parents=True)
    workers = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    results = [w.communicate(timeout=600) for w in workers]
    for worker, (_, stderr) in zip(workers, results):
        assert worker.returncode == 0, stderr[-3000:]
    trials = study_of(out).trials
    # N in total: each worker checks the count before each trial; only a start in the same instant overshoots
    assert 4 <= len(trials) <= 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))
    folders = {t.user_attrs["run_dir"] for t in trials}
    assert folders == {str(out / f"s-t{k}") for k in numbers}
    for k in numbers:
        assert json.loads((out / f"s-t{k}" / "trial.json").read_text())["trial"] == k
        assert artifacts.RunPaths(out / f"s-t{k}").trained_folds() == [0]
    assert yaml.safe_load((out / "s" / "best.yaml").read_text())["name"] == "s-best"


def test_the_wandb_sweep_example_passes_each_parameter_to_train_fold_as_a_set(tmp_path):
    """W&B cannot run here: the sweep file's command is run with the agent's expansion of ${args_no_hyphens} by hand
    (one key=value argument per parameter), train_fold.py replaced by a printout of its arguments."""
    sweep = yaml.safe_load((ROOT / "configs" / "search" / "wandb_sweep.yaml").read_text())
    command = sweep["command"]
    assert command[-1] == "${args_no_hyphens}" and command[:3] == ["${env}", "bash", "-c"]
    drawn = {key: spec["min"] if "min" in spec else spec["values"][-1] for key, spec in sweep["parameters"].items()}
    script = command[3].replace("exec python train_fold.py", "printf '%s\\n'")
    printed = subprocess.run(["bash", "-c", script, *command[4:-1], *(f"{k}={v}" for k, v in drawn.items())],
                             env={**os.environ, "WANDB_RUN_ID": "abc123"}, capture_output=True, text=True, check=True)
    argv = printed.stdout.splitlines()
    overrides = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
    assert overrides[:2] == ["name=sweep-abc123", "tracking.wandb=online"]
    cfg = load_config(ROOT / argv[argv.index("--config") + 1], overrides)
    assert cfg.name == "sweep-abc123" and cfg.train.lr == drawn["train.lr"]
    assert cfg.features.max_len == drawn["features.max_len"] and cfg.train.adam_beta2 == drawn["train.adam_beta2"]
    assert sweep["metric"] == {"name": "best_jaccard", "goal": "maximize"}  # what train_fold's tracker summarises
