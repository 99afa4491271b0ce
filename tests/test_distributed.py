"""Training and inference in a launch of several processes, as users start them: `torchrun --nproc_per_node 2` and
`accelerate launch --multi_gpu --num_processes 2`, here on the CPU (gloo) with the tiny model.

Fold 0 of the tiny experiment, with dropout off and 1 epoch, is trained in one process with batch 4 ("one") and in
two processes with batch 2 each, the same global batch ("ddp"): started under accelerate launch, stopped at a random
step, resumed under torchrun. The session's trained run (conftest.trained_run) is then predicted in two processes.
Three launches of a few seconds each, no more, for the suite's time: the resumed run is held to the one-process
run's training losses, which a resume that restored anything wrongly on any process would move far beyond the
tolerance (the exactness of a resume is checked in one process, in test_runs.py, and each process's own random
generators below).
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from foldnlp import artifacts
from foldnlp.batching import TrainingSet, epoch_batches, process_parts
from foldnlp.config import load_config
from foldnlp.errors import InputError
from foldnlp.steps.train_fold import train_fold
from foldnlp.training_state import LoopPosition, load_state, save_state, torch_rng_tensors
from helpers import (
    ROOT,
    SAMPLE_CSV,
    TEST_CSV,
    kill_seed,
    latest_test_outputs,
    run_cli,
    sets,
    small_external_squad,
    stop_at_step,
    tiny_settings,
)

# One thread a process (2 processes on the 2 cores here); progress as plain lines, unbuffered, in the order written.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
       "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# Dropout off: the two-process run then computes what the one-process run does, up to float rounding.
FAST = ["model.dropout=0.0", "train.epochs=1"]
# Tolerances of the two-process run against the one-process run with the same global batch. Each step trains the
# same windows at the same learning rates; only float rounding differs (bf16 autocast over differently padded
# halves, the gradients summed in another order). Measured here: the mean training losses of the evaluations agree
# to 5e-6 (relative), the CV to 5e-4. The tiny random model's answers are near ties, which a rounding difference can
# flip, so the CV gets 0.002 (6 % of its 0.032); the losses, 1e-4: a launch that trained the processes on other
# windows than the global batch's, scaled the averaged gradients wrongly or resumed from a wrong state on any
# process moves them by far more.
LOSS_RTOL, CV_ATOL = 1e-4, 0.002


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch() -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port())]


def launch(launcher: list[str], script: str, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher, script, *map(str, argv)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    external = small_external_squad(tmp / "xquad.en.small.json")

    def settings(name: str, batch_size: int) -> list[str]:
        return [*tiny_settings(tmp, tiny_model_dir, name, external), *FAST, f"train.batch_size={batch_size}"]

    code, _, err = run_cli("make_folds.py", *sets(settings("one", 4)))
    assert code == 0, err[-3000:]
    code, _, err = run_cli("train_fold.py", *sets(settings("one", 4)), "--fold", 0)
    assert code == 0, err[-3000:]

    seed = kill_seed()
    rng = random.Random(seed)
    total = json.loads(artifacts.RunPaths(tmp / "outputs" / "one").metrics(0).read_text())["steps"]
    stop = rng.randint(1, total - 2)
    ddp = settings("ddp", 2)
    state_json = artifacts.RunPaths(tmp / "outputs" / "ddp").training_state(0) / "state.json"
    stop_at_step([*accelerate_launch(), "train_fold.py", *sets(ddp), "--fold", "0"], ENV, state_json, stop, rng,
                 stop_signal=signal.SIGTERM)
    stopped_at = json.loads(state_json.read_text())["position"]["step"]
    refusal = ""
    try:  # one process cannot go on with what two saved
        train_fold(load_config(None, ddp), 0, resume=True, progress=False)
    except InputError as err:
        refusal = str(err)
    resumed = launch(TORCHRUN, "train_fold.py", *sets(ddp), "--fold", 0, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return {"tmp": tmp, "resumed": resumed, "refusal": refusal, "stopped_at": stopped_at,
            "where": f"stopped at step {stopped_at} of {total} (KILL_SEED={seed})"}


def paths(runs, name: str) -> artifacts.RunPaths:
    return artifacts.RunPaths(runs["tmp"] / "outputs" / name)


def metrics(runs, name: str) -> dict:
    return json.loads(paths(runs, name).metrics(0).read_text())


def test_two_processes_write_one_checkpoint_one_metrics_file_and_every_oof_id_once(runs):
    run = paths(runs, "ddp")
    # One writer: the fold holds its artifacts and nothing else (no second copy, no temporary left behind)
    assert sorted(p.name for p in run.fold_dir(0).iterdir()) == ["metrics.json", "model", "oof.csv",
                                                                "oof_scores.npz"], runs["where"]
    assert (run.model_dir(0) / "model.safetensors").is_file()
    assert not [p for p in run.root.rglob(".*") if p.name.endswith(".tmp")]
    assert metrics(runs, "ddp")["processes"] == 2
    folds = pd.read_csv(next((runs["tmp"] / "folds").glob("*.csv")), dtype=str)
    held_out = sorted(folds.loc[folds["fold"] == "0", "id"])
    oof = artifacts.load_scores(run.oof_scores(0))
    assert sorted(oof.ids) == held_out  # each held-out id exactly once: no id lost, none padded in twice
    assert sorted(pd.read_csv(run.oof_predictions(0), dtype=str)["id"]) == held_out


def test_the_log_tells_the_story_once(runs):
    log = runs["resumed"].stderr + runs["resumed"].stdout
    lines = [line for line in log.splitlines() if line.strip()]
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, repeated
    resumed_from = f"resumed from {paths(runs, 'ddp').training_state(0)} at step {runs['stopped_at']} "
    assert log.count(resumed_from) == 1, (runs["where"], log[-3000:])
    assert log.count("training on ") == 1 and "on 2 processes (2 windows each, global batch 4)" in log
    assert log.count("step 18 (epoch 1.00): jaccard") == 1
    assert runs["resumed"].stdout.count("fold 0: best jaccard") == 1
    assert "rank 1" not in log  # the other process logs warnings only, and had none


def test_two_processes_train_as_one_with_the_same_global_batch_and_resume_so(runs):
    one, ddp = metrics(runs, "one"), metrics(runs, "ddp")
    for key in ("steps", "steps_per_epoch", "train_windows"):
        assert ddp[key] == one[key], key
    assert [h["step"] for h in ddp["history"]] == [h["step"] for h in one["history"]]
    np.testing.assert_allclose([h["train_loss"] for h in ddp["history"]], [h["train_loss"] for h in one["history"]],
                               rtol=LOSS_RTOL, err_msg=runs["where"])
    print(f"CV (jaccard) of fold 0: one process {one['jaccard']:.5f}, two processes {ddp['jaccard']:.5f}")
    assert abs(ddp["jaccard"] - one["jaccard"]) <= CV_ATOL, runs["where"]
    assert not paths(runs, "ddp").training_state(0).exists()


def test_a_state_saved_by_two_processes_is_not_resumed_by_one(runs):
    assert "launch of 2 process(es), this one has 1" in runs["refusal"], runs["where"]
    assert "--nproc_per_node 2" in runs["refusal"] and "--overwrite" in runs["refusal"]


def test_inference_in_two_processes_gives_the_one_process_outputs(trained_run, tmp_path):
    """infer.py shares each chunk's batches between the processes and gathers them back in order; each window is
    predicted in the batch it has in one process, so the outputs are the same (the tolerance is for float rounding
    only; here they are identical)."""
    single = latest_test_outputs(trained_run.root)
    out = tmp_path / "two"
    done = launch(TORCHRUN, "infer.py", "--run-dir", trained_run.root, "--out-dir", out, "--test-csv", TEST_CSV,
                  "--sample-submission", SAMPLE_CSV)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("wrote test outputs to") == 1
    two = latest_test_outputs(out)
    assert two.key == single.key and two.folds == single.folds == [0, 1]
    assert json.loads(two.home.test_record(two.key).read_text())["runtime"]["processes"] == 2
    for fold in two.folds:
        a, b = (artifacts.load_scores(r.home.test_scores(r.key, fold)) for r in (single, two))
        assert list(b.ids) == list(a.ids)
        np.testing.assert_allclose(b.values, a.values, rtol=1e-5, atol=1e-5)
        pd.testing.assert_frame_equal(pd.read_csv(two.home.test_predictions(two.key, fold), dtype=str),
                                      pd.read_csv(single.home.test_predictions(single.key, fold), dtype=str))


def test_processes_share_every_global_batch_evenly():
    lengths = np.random.default_rng(0).integers(5, 50, size=38)
    data = TrainingSet([np.ones(n, dtype=np.int64) for n in lengths], {}, keep_chance=np.ones(38))
    batches = epoch_batches(data, 8, np.random.default_rng(3))  # 38 windows: 4 batches of 8 and one of 6
    alone = process_parts(batches, 0, 1)  # one process: the batches themselves
    assert [n for _, n in alone] == [len(b) for b in batches]
    assert all(np.array_equal(part, batch) for (part, _), batch in zip(alone, batches, strict=True))
    short = [*batches, np.array([99])]  # a global batch of fewer windows than processes is dropped
    parts = [process_parts(short, index, 3) for index in range(3)]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(batches)  # as many batches on each
    for k, batch in enumerate(batches):
        shares = [p[k][0] for p in parts]
        assert sorted(np.concatenate(shares)) == sorted(batch)  # each window of the batch in exactly one part
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert {p[k][1] for p in parts} == {len(batch)}


def test_a_saved_state_gives_each_process_its_own_random_generators(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    torch.manual_seed(1)
    first = torch_rng_tensors()
    torch.manual_seed(2)
    second = torch_rng_tensors()
    save_state(tmp_path / "state", model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
               position=LoopPosition(processes=2), provenance={}, rng_states=[first, second])
    for index, expected in enumerate([first, second]):
        torch.manual_seed(3)
        at = load_state(tmp_path / "state", model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                        process_index=index)
        assert torch.equal(torch.get_rng_state(), expected["cpu"]) and at.processes == 2
