"""Nothing lost, nothing mixed up: kill/resume, determinism, seed + fold, and the guards of train_fold and ensemble.

One tiny experiment (2 folds, dropout on so that torch's RNG matters) is trained three ways: uninterrupted (A),
again from scratch (B, the determinism check), and killed with SIGKILL twice at random steps then resumed (C).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from foldnlp import artifacts
from foldnlp.config import load_config
from foldnlp.errors import InputError
from foldnlp.steps.ensemble import ensemble, oof_coverage_problem
from foldnlp.steps.infer import infer
from foldnlp.steps.train_fold import train_fold

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def overrides(tmp: Path, model_dir: Path, name: str) -> list[str]:
    return [f"name={name}", f"output_dir={tmp / 'outputs'}", f"folds.folds_dir={tmp / 'folds'}",
            f"model.name_or_path={model_dir}", "model.dropout=0.1", "folds.n_folds=2", "data.max_train_examples=40",
            "data.external_squad=[]", "features.max_len=96", "features.doc_stride=32", "train.epochs=2",
            "train.batch_size=4", "train.evals_per_epoch=2", "train.eval_start_epoch=0", "train.save_every_steps=1",
            "tracking.wandb=disabled"]


def command(script: str, sets: list[str], *extra) -> list[str]:
    return [sys.executable, script, *[a for o in sets for a in ("--set", o)], *map(str, extra)]


def run(args: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def kill_at_step(args: list[str], state_json: Path, step: int, rng: random.Random) -> None:
    """Start args, SIGKILL it at a random moment after its saved state reaches `step` (maybe mid-save)."""
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    sets = {name: overrides(tmp, tiny_model_dir, name) for name in ("a", "b", "c")}
    run(command("make_folds.py", sets["a"]))
    for fold in (0, 1):
        run(command("train_fold.py", sets["a"], "--fold", fold))
    run(command("train_fold.py", sets["b"], "--fold", 0))

    rng = random.Random()
    total = json.loads(artifacts.RunPaths(tmp / "outputs" / "a").metrics(0).read_text())["history"][-1]["step"]
    first = rng.randint(1, total // 2)
    second = rng.randint(first + 1, total - 2)
    state_json = artifacts.RunPaths(tmp / "outputs" / "c").training_state(0) / "state.json"
    kill_at_step(command("train_fold.py", sets["c"], "--fold", 0), state_json, first, rng)
    killed_state = json.loads(state_json.read_text())["position"]["step"]
    refusal = ""
    try:
        train_fold(load_config(None, sets["c"]), 0, progress=False)  # no --resume: refused, state kept
    except InputError as err:
        refusal = str(err)
    kill_at_step(command("train_fold.py", sets["c"], "--fold", 0, "--resume"), state_json, second, rng)
    resumed = run(command("train_fold.py", sets["c"], "--fold", 0, "--resume"))
    return {"tmp": tmp, "sets": sets, "total": total, "kills": (first, second), "killed_state": killed_state,
            "refusal": refusal, "resumed_log": resumed.stderr}


def paths(runs, name: str) -> artifacts.RunPaths:
    return artifacts.RunPaths(runs["tmp"] / "outputs" / name)


def metrics(runs, name: str, fold: int = 0) -> dict:
    return json.loads(paths(runs, name).metrics(fold).read_text())


def test_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(runs):
    a, c = paths(runs, "a"), paths(runs, "c")
    where = f"killed at steps {runs['kills']} of {runs['total']}"
    assert "resumed from" in runs["resumed_log"], where
    assert metrics(runs, "c")["jaccard"] == metrics(runs, "a")["jaccard"], where
    assert metrics(runs, "c")["best_step"] == metrics(runs, "a")["best_step"], where
    strip = lambda history: [{k: v for k, v in h.items() if k != "elapsed_s"} for h in history]  # noqa: E731
    assert strip(metrics(runs, "c")["history"]) == strip(metrics(runs, "a")["history"]), where
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (c.model_dir(0) / name).read_bytes() == (a.model_dir(0) / name).read_bytes(), (name, where)
    beside = [yaml.safe_load((p.model_dir(0) / artifacts.CONFIG_BESIDE_WEIGHTS).read_text()) for p in (a, c)]
    same = [{k: v for k, v in b.items() if k not in ("name", "output_dir")} for b in beside]
    assert same[0] == same[1]
    oof_a, oof_c = artifacts.load_char_scores(a.oof_scores(0)), artifacts.load_char_scores(c.oof_scores(0))
    np.testing.assert_array_equal(oof_c.start, oof_a.start)
    np.testing.assert_array_equal(oof_c.end, oof_a.end)
    assert not c.training_state(0).exists()  # removed once the fold finished


def test_a_saved_state_is_not_silently_discarded(runs):
    assert f"has a saved training state at step {runs['killed_state']}" in runs["refusal"]
    assert "--resume" in runs["refusal"] and "--overwrite" in runs["refusal"]


def test_two_clean_runs_are_identical_and_each_fold_seeds_with_seed_plus_fold(runs):
    a, b = paths(runs, "a"), paths(runs, "b")
    assert (a.model_dir(0) / "model.safetensors").read_bytes() == (b.model_dir(0) / "model.safetensors").read_bytes()
    oof_a, oof_b = artifacts.load_char_scores(a.oof_scores(0)), artifacts.load_char_scores(b.oof_scores(0))
    np.testing.assert_array_equal(oof_a.start, oof_b.start)
    assert [metrics(runs, "a", k)["provenance"]["seed"] for k in (0, 1)] == [42, 43]


def test_same_seed_gives_an_identical_fold_file(runs, tmp_path):
    sets = runs["sets"]["a"] + [f"folds.folds_dir={tmp_path}"]
    run(command("make_folds.py", sets))
    (original,) = (runs["tmp"] / "folds").glob("*.csv")
    assert (tmp_path / original.name).read_bytes() == original.read_bytes()


def test_resume_refuses_a_state_saved_under_another_config(runs, tmp_path):
    cfg = load_config(None, overrides(runs["tmp"], Path(load_config(None, runs["sets"]["a"]).model.name_or_path), "d"))
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


def test_finished_folds_are_kept_and_resume_skips_them(runs):
    cfg = load_config(None, runs["sets"]["a"])
    before = paths(runs, "a").metrics(0).read_bytes()
    with pytest.raises(InputError, match="already finished .* pass --overwrite"):
        train_fold(cfg, 0, progress=False)
    assert train_fold(cfg, 0, resume=True, progress=False)["jaccard"] == metrics(runs, "a")["jaccard"]
    assert paths(runs, "a").metrics(0).read_bytes() == before


def test_a_fold_trained_with_another_config_is_refused(runs):
    cfg = load_config(None, runs["sets"]["a"] + ["train.lr=0.5"])
    before = paths(runs, "a").metrics(0).read_bytes()
    with pytest.raises(InputError, match=r"fold 1 of .* was trained differently \(config train.lr: 0.0001 → 0.5\)"):
        train_fold(cfg, 0, overwrite=True, progress=False)
    assert paths(runs, "a").metrics(0).read_bytes() == before  # refused before anything was deleted


@pytest.fixture(scope="module")
def inferred(runs):
    for name in ("a",):
        infer(paths(runs, name).root, folds=None, test_csv=str(FIXTURES / "chaii_test.csv"),
              sample_csv=str(FIXTURES / "chaii_sample_submission.csv"), feature_overrides={}, batch_size=None,
              precision=None, progress=False)
    return runs


def blend(runs, names, **kw):
    return ensemble([paths(runs, n).root for n in names], weights=None, test_csv=str(FIXTURES / "chaii_test.csv"),
                    sample_csv=str(FIXTURES / "chaii_sample_submission.csv"), out=runs["tmp"] / "submission.csv",
                    **kw)


def copy_run(runs, source: str, name: str) -> artifacts.RunPaths:
    shutil.copytree(paths(runs, source).root, paths(runs, name).root)
    return paths(runs, name)


def edit_provenance(run_paths: artifacts.RunPaths, fold: int, change) -> None:
    record = json.loads(run_paths.metrics(fold).read_text())
    change(record["provenance"])
    run_paths.metrics(fold).write_text(json.dumps(record))


def test_ensemble_refuses_experiments_trained_on_other_folds(inferred):
    other = copy_run(inferred, "a", "other_folds")
    for fold in (0, 1):
        edit_provenance(other, fold, lambda p: p["fold_file"].update(path="folds/k5.csv", sha256="f" * 64))
    with pytest.raises(InputError, match=r"other_folds was trained on fold file folds/k5.csv \(sha256 ffffffffffff\)"
                                         r".*its folds differ; the CV of such a blend is not valid. Pass "
                                         r"--allow-mixed-folds"):
        blend(inferred, ["a", "other_folds"])
    assert "CV Jaccard" in blend(inferred, ["a", "other_folds"], allow_mixed_folds=True)


def test_ensemble_refuses_folds_of_one_experiment_trained_differently(inferred):
    mixed = copy_run(inferred, "a", "mixed_config")
    edit_provenance(mixed, 1, lambda p: p.update(config_sha256="0" * 64))
    with pytest.raises(InputError, match=r"fold\(s\) \[1\] were trained with another config, fold file or data"):
        blend(inferred, ["mixed_config"])


def test_ensemble_refuses_out_of_fold_outputs_that_miss_a_fold(inferred, caplog):
    partial = copy_run(inferred, "a", "partial")
    partial.metrics(1).unlink()  # fold 1 never finished
    with pytest.raises(InputError, match=r"partial: \d+ of 786 training ids missing \(fold\(s\) \[1\] not trained\)"):
        blend(inferred, ["a", "partial"])
    report = blend(inferred, ["a", "partial"], allow_mixed_folds=True)
    assert "--allow-mixed-folds" in caplog.text
    assert "folds [0])" in report  # the CV covers only fold 0's ids, which both experiments have


def test_ensemble_refuses_test_outputs_for_other_ids(inferred):
    other = copy_run(inferred, "a", "other_test")
    scores = artifacts.load_char_scores(other.test_scores(1))
    artifacts.save_char_scores(other.test_scores(1), scores.select(scores.ids[1:].tolist()))
    with pytest.raises(InputError, match=r"test outputs of fold 1 of .*other_test cover other ids than the "
                                         r"submission \(1 id\(s\) of .*chaii_sample_submission.csv missing"):
        blend(inferred, ["a", "other_test"], allow_mixed_folds=True)


def test_oof_coverage_names_repeated_and_unknown_ids():
    import pandas as pd

    folds = pd.Series([0, 0, 1], index=["x", "y", "z"])
    assert oof_coverage_problem(["x", "y", "z"], folds, [0, 1]) == ""
    problem = oof_coverage_problem(["x", "x", "y", "q"], folds, [0, 1])
    assert problem == ("1 of 3 training ids missing, e.g. z, 1 id(s) predicted by several folds, e.g. x, "
                       "1 id(s) not in the training data, e.g. q")
