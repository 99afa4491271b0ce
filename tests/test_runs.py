"""Nothing lost, nothing mixed up: kill/resume, determinism, seed + fold, and the guards of train_fold and ensemble.

The session's tiny experiment (conftest.trained_run, "a": 2 folds, dropout on so that torch's RNG matters) is
trained again from scratch (b, the determinism check) and, in a subprocess, killed with SIGKILL twice then resumed
(c). The kill points are drawn from a seed printed with the test output (set KILL_SEED to replay one).
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from foldnlp import artifacts
from foldnlp.config import from_dict, load_config
from foldnlp.errors import InputError
from foldnlp.provenance import mismatch, training_config
from foldnlp.steps.ensemble import ensemble, oof_coverage_problem
from foldnlp.steps.train_fold import train_fold
from helpers import ROOT, SAMPLE_CSV, TEST_CSV, kill_seed, latest_test_outputs, sets, stop_at_step

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1",
       "OMP_NUM_THREADS": str(__import__("torch").get_num_threads())}  # the same threads as the in-process runs


def train_command(settings: list[str], *extra) -> list[str]:
    return [sys.executable, "train_fold.py", *sets(settings), *map(str, extra)]


@pytest.fixture(scope="module")
def runs(trained_run):
    tmp = trained_run.tmp
    train_fold(load_config(None, trained_run.settings("b")), 0, progress=False)

    seed = kill_seed()
    rng = random.Random(seed)
    total = json.loads(artifacts.RunPaths(trained_run.root).metrics(0).read_text())["history"][-1]["step"]
    first = rng.randint(1, total // 2)
    second = rng.randint(first + 1, total - 2)
    c = trained_run.settings("c")
    state_json = artifacts.RunPaths(tmp / "outputs" / "c").training_state(0) / "state.json"
    stop_at_step(train_command(c, "--fold", 0), ENV, state_json, first, rng)
    killed_state = json.loads(state_json.read_text())["position"]["step"]
    refusal = ""
    try:
        train_fold(load_config(None, c), 0, progress=False)  # no --resume: refused, state kept
    except InputError as err:
        refusal = str(err)
    stop_at_step(train_command(c, "--fold", 0, "--resume"), ENV, state_json, second, rng)
    resumed = subprocess.run(train_command(c, "--fold", 0, "--resume"), cwd=ROOT, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return {"tmp": tmp, "run": trained_run, "total": total, "kills": (first, second), "seed": seed,
            "killed_state": killed_state, "refusal": refusal, "resumed_log": resumed.stderr}


def paths(runs, name: str) -> artifacts.RunPaths:
    return artifacts.RunPaths(runs["tmp"] / "outputs" / name)


def metrics(runs, name: str, fold: int = 0) -> dict:
    return json.loads(paths(runs, name).metrics(fold).read_text())


def test_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(runs):
    a, c = paths(runs, "a"), paths(runs, "c")
    where = f"killed at steps {runs['kills']} of {runs['total']} (KILL_SEED={runs['seed']})"
    assert "resumed from" in runs["resumed_log"], where
    assert metrics(runs, "c")["jaccard"] == metrics(runs, "a")["jaccard"], where
    assert metrics(runs, "c")["best_step"] == metrics(runs, "a")["best_step"], where
    timing = ("elapsed_s", "windows_per_s")  # how fast, not what was learnt
    strip = lambda history: [{k: v for k, v in h.items() if k not in timing} for h in history]  # noqa: E731
    assert strip(metrics(runs, "c")["history"]) == strip(metrics(runs, "a")["history"]), where
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (c.model_dir(0) / name).read_bytes() == (a.model_dir(0) / name).read_bytes(), (name, where)
    beside = [yaml.safe_load((p.model_dir(0) / artifacts.CONFIG_BESIDE_WEIGHTS).read_text()) for p in (a, c)]
    same = [{k: v for k, v in b.items() if k not in ("name", "output_dir")} for b in beside]
    assert same[0] == same[1]
    oof_a, oof_c = artifacts.load_scores(a.oof_scores(0)), artifacts.load_scores(c.oof_scores(0))
    np.testing.assert_array_equal(oof_c.values, oof_a.values)
    assert not c.training_state(0).exists()  # removed once the fold finished


def test_a_saved_state_is_not_silently_discarded(runs):
    assert f"has a saved training state at step {runs['killed_state']}" in runs["refusal"]
    assert "--resume" in runs["refusal"] and "--overwrite" in runs["refusal"]


def test_two_clean_runs_are_identical_and_each_fold_seeds_with_seed_plus_fold(runs):
    a, b = paths(runs, "a"), paths(runs, "b")
    assert (a.model_dir(0) / "model.safetensors").read_bytes() == (b.model_dir(0) / "model.safetensors").read_bytes()
    oof_a, oof_b = artifacts.load_scores(a.oof_scores(0)), artifacts.load_scores(b.oof_scores(0))
    np.testing.assert_array_equal(oof_a.values, oof_b.values)
    assert [metrics(runs, "a", k)["provenance"]["seed"] for k in (0, 1)] == [42, 43]


def test_same_seed_gives_an_identical_fold_file(runs, tmp_path):
    from foldnlp.steps.make_folds import make_folds

    make_folds(load_config(None, runs["run"].overrides + [f"folds.folds_dir={tmp_path}"]))
    (original,) = (runs["tmp"] / "folds").glob("*.csv")
    assert (tmp_path / original.name).read_bytes() == original.read_bytes()


def test_resume_refuses_a_state_saved_under_another_config(runs):
    cfg = load_config(None, runs["run"].settings("d"))
    recorded = metrics(runs, "a")["provenance"]
    train = {**recorded["config"]["train"], "lr": 0.5}
    other = {**recorded, "config_sha256": "0" * 64, "config": {**recorded["config"], "train": train}}
    state = paths(runs, "d").training_state(0)
    state.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        (state / name).write_bytes(b"")
    (state / "state.json").write_text(json.dumps({"position": {"step": 3}, "provenance": other}))
    with pytest.raises(InputError, match=r"cannot resume fold 0 .*saved by a different run \(config train.lr: 0.5 "
                                         r"→ 0.0001\); pass --overwrite"):
        train_fold(cfg, 0, resume=True, progress=False)


def test_finished_folds_are_kept_and_resume_skips_them_whatever_the_runtime_settings(runs):
    cfg = load_config(None, runs["run"].overrides)
    before = paths(runs, "a").metrics(0).read_bytes()
    with pytest.raises(InputError, match="already finished .* pass --overwrite"):
        train_fold(cfg, 0, progress=False)
    # How this run executes (state-saving interval, eval batch size, tracking) is not what the experiment is.
    runtime = load_config(None, runs["run"].overrides + ["runtime.save_every_steps=50", "runtime.eval_batch_size=3",
                                                         "tracking.wandb=offline", "inference.batch_size=5"])
    assert train_fold(runtime, 0, resume=True, progress=False)["jaccard"] == metrics(runs, "a")["jaccard"]
    assert paths(runs, "a").metrics(0).read_bytes() == before


def test_resume_does_not_keep_a_finished_fold_trained_with_another_config(runs):
    cfg = load_config(None, runs["run"].overrides + ["train.lr=0.5"])
    before = paths(runs, "a").metrics(0).read_bytes()
    with pytest.raises(InputError, match=r"fold 0 of .* already finished, but trained differently \(config train.lr: "
                                         r"0.0001 → 0.5\): pass --overwrite"):
        train_fold(cfg, 0, resume=True, progress=False)
    assert paths(runs, "a").metrics(0).read_bytes() == before


def test_a_fold_trained_with_another_config_is_refused(runs):
    cfg = load_config(None, runs["run"].overrides + ["train.lr=0.5"])
    before = paths(runs, "a").metrics(0).read_bytes()
    with pytest.raises(InputError, match=r"fold 1 of .* was trained differently \(config train.lr: 0.0001 → 0.5\)"):
        train_fold(cfg, 0, overwrite=True, progress=False)
    assert paths(runs, "a").metrics(0).read_bytes() == before  # refused before anything was deleted


def blend(runs, names, out: Path, **kw):
    return ensemble([paths(runs, n).root for n in names], weights=None, test_csv=str(TEST_CSV),
                    sample_csv=str(SAMPLE_CSV), out=out, **kw)


def copy_run(runs, source: str, name: str) -> artifacts.RunPaths:
    shutil.copytree(paths(runs, source).root, paths(runs, name).root)
    return paths(runs, name)


def edit_provenance(run_paths: artifacts.RunPaths, fold: int, change) -> None:
    record = json.loads(run_paths.metrics(fold).read_text())
    change(record["provenance"])
    run_paths.metrics(fold).write_text(json.dumps(record))


def test_ensemble_refuses_experiments_trained_on_other_folds(runs, tmp_path):
    other = copy_run(runs, "a", "other_folds")
    for fold in (0, 1):
        edit_provenance(other, fold, lambda p: p["fold_file"].update(path="folds/k5.csv", sha256="f" * 64))
    with pytest.raises(InputError, match=r"other_folds was trained on fold file folds/k5.csv \(sha256 ffffffffffff\)"
                                         r".*its folds differ; the CV of such a blend is not valid. Pass "
                                         r"--allow-mixed-folds"):
        blend(runs, ["a", "other_folds"], tmp_path / "s.csv")
    assert "CV Jaccard" in blend(runs, ["a", "other_folds"], tmp_path / "s.csv", allow_mixed_folds=True)


def test_ensemble_refuses_folds_of_one_experiment_trained_differently(runs, tmp_path):
    mixed = copy_run(runs, "a", "mixed_config")
    edit_provenance(mixed, 1, lambda p: p.update(config_sha256="0" * 64))
    with pytest.raises(InputError, match=r"fold\(s\) \[1\] were trained with another config, fold file or data"):
        blend(runs, ["mixed_config"], tmp_path / "s.csv")


def test_ensemble_refuses_out_of_fold_outputs_that_miss_a_fold(runs, tmp_path, caplog):
    partial = copy_run(runs, "a", "partial")
    partial.metrics(1).unlink()  # fold 1 never finished
    with pytest.raises(InputError, match=r"partial: \d+ of 786 training ids missing \(fold\(s\) \[1\] not trained\)"):
        blend(runs, ["a", "partial"], tmp_path / "s.csv")
    report = blend(runs, ["a", "partial"], tmp_path / "s.csv", allow_mixed_folds=True)
    assert "--allow-mixed-folds" in caplog.text
    assert "folds [0])" in report  # the CV covers only fold 0's ids, which both experiments have


def test_ensemble_refuses_test_outputs_for_other_ids(runs, tmp_path):
    other = copy_run(runs, "a", "other_test")
    key = latest_test_outputs(other.root).key
    scores = artifacts.load_scores(other.test_scores(key, 1))
    artifacts.save_scores(other.test_scores(key, 1), scores.select(scores.ids[1:].tolist()))
    with pytest.raises(InputError, match=r"test outputs of fold 1 of .*other_test@chaii_test-[0-9a-f]{8} cover other "
                                         r"ids than the submission \(1 id\(s\) of .*chaii_test.csv missing"):
        blend(runs, ["a", "other_test"], tmp_path / "s.csv", allow_mixed_folds=True)


def test_oof_coverage_names_repeated_and_unknown_ids():
    folds = pd.Series([0, 0, 1], index=["x", "y", "z"])
    assert oof_coverage_problem(["x", "y", "z"], folds, [0, 1]) == ""
    problem = oof_coverage_problem(["x", "x", "y", "q"], folds, [0, 1])
    assert problem == ("1 of 3 training ids missing, e.g. z, 1 id(s) predicted by several folds, e.g. x, "
                       "1 id(s) not in the training data, e.g. q")


def test_fields_added_since_a_run_trained_at_their_defaults_are_no_difference():
    def record(config: dict) -> dict:
        return {"config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
                "config": config, "fold_file": {"path": "f.csv", "sha256": "x"}, "data": {}}

    now = training_config(from_dict({"task": "qa"}))
    older = json.loads(json.dumps(now))
    del older["train"]["adam_eps"], older["train"]["spike_factor"]  # fields a later foldnlp added
    assert mismatch(record(older), record(now)) == ""
    changed = json.loads(json.dumps(now))
    changed["train"]["spike_factor"] = 0.0
    assert mismatch(record(older), record(changed)) == "config train.spike_factor: (absent) → 0.0"
    changed["train"]["lr"] = 1.0
    assert "train.lr: " in mismatch(record(now), record(changed))
