"""Training that heals itself (training_guard.py) and a run window that informs: a NaN, an infinite gradient and a
loss spike injected into tiny runs through the loss function, first of fit() on a 2-parameter-tensor model (fast,
every decision checked), then of train_fold on the tiny QA experiment with a fake wandb (metrics.json, the log,
the progress lines and what wandb gets)."""

import json
import logging
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from foldnlp import artifacts, training_guard
from foldnlp.batching import TrainingSet, epoch_batches
from foldnlp.config import TrainConfig, load_config
from foldnlp.errors import InputError
from foldnlp.training import Evaluation, StateSaving, fit, make_accelerator
from foldnlp.training_state import read_state_json

SEED = 7
CFG = TrainConfig(epochs=2, batch_size=4, evals_per_epoch=2, eval_start_epoch=0, lr=1e-2, head_lr=1e-2,
                  spike_warmup_steps=3, seed=SEED)  # 16 batches an epoch, 32 steps (precision: the suite's, auto)
NAN_AT, INF_GRAD_AT, SPIKE_AT = 4, 2, 11  # positions in epoch 0's batch order: steps 5, 3 and 12
EVERY = 3  # state saved every 3 steps (and at the evaluations of steps 8 and 16): the spike goes back to step 9


class Pooled(torch.nn.Module):
    """Mean-pooled embeddings and a linear head: a model fit() can train in milliseconds."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = torch.nn.Embedding(30, 8), torch.nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return {"logits": self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))}


def tiny_set() -> TrainingSet:
    """64 windows of 6 tokens with random labels (the loss stays near log 2: no benign spikes). One length, so
    that batches are not grouped by length: each epoch's batches are other sets of windows."""
    rng = np.random.default_rng(0)
    ids = [rng.integers(1, 30, size=6) for _ in range(64)]
    return TrainingSet(ids, {"label": rng.integers(0, 2, size=64), "window": np.arange(64)}, np.ones(64))


def plain_loss(outputs, batch):
    return F.cross_entropy(outputs["logits"], batch["label"])


class InfiniteGradient(torch.autograd.Function):
    """The identity forward, infinite gradients backward: a finite loss whose gradient norm is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


def batch_windows(data: TrainingSet, position: int) -> set[int]:
    """Windows of the batch at `position` of epoch 0 (fit draws epoch 0 from a fresh generator of its seed)."""
    return set(epoch_batches(data, CFG.batch_size, np.random.default_rng(SEED))[position].tolist())


def run_fit(model, data, loss_fn, cfg=CFG, state=None):
    def evaluate(m) -> Evaluation:
        m.eval()
        with torch.no_grad():
            batch = {"input_ids": torch.tensor([list(ids[:3]) for ids in data.input_ids]),
                     "label": torch.from_numpy(data.targets["label"])}
            score = -plain_loss(m(batch["input_ids"], torch.ones_like(batch["input_ids"])), batch).item()
        return Evaluation(score)

    return fit(model, data, cfg, accelerator=make_accelerator(cfg), pad_id=0, loss_fn=loss_fn, evaluate=evaluate,
               save_best=lambda m, e: None, head_prefixes=("head",), seed=SEED, progress=False, state=state)


@pytest.fixture(scope="module")
def healed(tmp_path_factory):
    """A fit with a NaN loss, an infinite gradient and a spike injected at batches of epoch 0, the spike every time
    its batch is trained (so a replay that did not skip it would spike again), and the same fit without them."""
    data, model = tiny_set(), Pooled()
    marks = {name: batch_windows(data, at) for name, at in
             [("nan", NAN_AT), ("inf", INF_GRAD_AT), ("spike", SPIKE_AT)]}
    calls = []  # (windows of the batch, the parameters it was trained from)

    def injecting(outputs, batch):
        windows = set(batch["window"].tolist())
        calls.append((windows, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        loss = plain_loss(outputs, batch)
        if windows == marks["nan"]:
            return loss * math.nan
        if windows == marks["inf"]:
            return InfiniteGradient.apply(loss)
        return loss * 100 if windows == marks["spike"] else loss

    folder = tmp_path_factory.mktemp("guard") / "state"
    result = run_fit(model, data, injecting, state=StateSaving(folder, {}, every_steps=EVERY))
    reference = run_fit(Pooled(), data, plain_loss)
    return {"result": result, "reference": reference, "model": model, "calls": calls, "marks": marks,
            "folder": folder, "data": data}


def test_non_finite_steps_are_skipped_counted_and_leave_the_parameters_alone(healed):
    result, calls = healed["result"], healed["calls"]
    skipped = [e for e in result.events if e["kind"] == "nonfinite"]
    assert [(e["step"], e["cause"], e["action"]) for e in skipped] == \
        [(INF_GRAD_AT + 1, "gradient norm", "skipped"), (NAN_AT + 1, "loss", "skipped")]
    assert skipped[1]["loss"] is None and math.isfinite(skipped[0]["loss"])
    assert result.nonfinite_steps == 2
    for mark in ("nan", "inf"):
        (i,) = [i for i, (windows, _) in enumerate(calls) if windows == healed["marks"][mark]]
        before, after = calls[i][1], calls[i + 1][1]  # the parameters it saw, and those the next batch saw
        assert all(torch.equal(before[k], after[k]) for k in before), mark
        assert any(not torch.equal(calls[i + 1][1][k], calls[i + 2][1][k]) for k in before)  # the next step trains


def test_a_spike_reverts_to_the_last_saved_state_with_a_lower_rate_and_its_batch_is_skipped(healed):
    result, calls, data = healed["result"], healed["calls"], healed["data"]
    (spike,) = [e for e in result.events if e["kind"] == "spike"]
    assert spike["step"] == SPIKE_AT + 1 and spike["action"] == "reverted" and spike["reverted_to"] == 9
    assert spike["loss"] > 5 * spike["running_mean"] and spike["lr_scale"] == 0.5
    assert [spike["epoch"], spike["batch"]] == [0, SPIKE_AT]
    assert result.reverts == 1 and result.lr_scale == 0.5
    seen = [windows for windows, _ in calls]
    assert seen.count(healed["marks"]["spike"]) == 1  # tried once, never replayed
    # the replay went back: the batches of steps 10 and 11 were trained twice, the one after the spike once again
    for position in (9, 10):
        assert seen.count(batch_windows(data, position)) == 2
    # the rest of the run trains at half the rate of the schedule
    lr = {h["step"]: h["lr"] for h in result.history}
    reference = {h["step"]: h["lr"] for h in healed["reference"].history}
    assert lr[8] == pytest.approx(reference[8]) and lr[16] == pytest.approx(0.5 * reference[16])
    assert lr[32] == pytest.approx(0.5 * reference[32])
    assert all(torch.isfinite(p).all() for p in healed["model"].parameters())
    assert [h["step"] for h in result.history] == [8, 16, 24, 32]


def test_with_a_grad_scaler_the_scaler_skips_the_step_and_it_is_counted_once():
    """fp16 on CUDA trains with a grad scaler, which finds non-finite gradients itself and must see them to lower
    its scale; a CPU has no fp16 scaler, so one of torch's CPU scalers stands in for it."""
    data, model = tiny_set(), Pooled()
    nan, calls = batch_windows(data, NAN_AT), []

    def injecting(outputs, batch):
        calls.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        loss = plain_loss(outputs, batch)
        return loss * math.nan if set(batch["window"].tolist()) == nan else loss

    accelerator = make_accelerator(CFG)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # before prepare: the optimizer takes it
    result = fit(model, data, CFG, accelerator=accelerator, pad_id=0, loss_fn=injecting,
                 evaluate=lambda m: Evaluation(0.0), save_best=lambda m, e: None, head_prefixes=("head",), seed=SEED,
                 progress=False)
    (event,) = result.events
    assert (event["step"], event["cause"], event["action"]) == (NAN_AT + 1, "loss", "skipped by the fp16 grad scaler")
    assert result.nonfinite_steps == 1 and accelerator.scaler.get_scale() == 2.0**9  # lowered once
    assert all(torch.equal(calls[NAN_AT][k], calls[NAN_AT + 1][k]) for k in calls[NAN_AT])


def test_events_are_in_the_saved_state_and_a_resume_keeps_them(healed):
    position = read_state_json(healed["folder"])["position"]
    assert position["events"] == healed["result"].events and position["skipped_batches"] == [[0, SPIKE_AT]]
    resumed = run_fit(Pooled(), healed["data"], plain_loss,
                      state=StateSaving(healed["folder"], {}, resume=True, every_steps=EVERY))
    assert resumed.events == healed["result"].events
    assert (resumed.reverts, resumed.nonfinite_steps, resumed.lr_scale) == (1, 2, 0.5)


def test_a_clean_run_is_identical_with_the_guard_on_or_off(healed):
    model = Pooled()
    off = run_fit(model, healed["data"], plain_loss, TrainConfig(**{**CFG.__dict__, "spike_factor": 0.0}))
    reference = Pooled()
    on = run_fit(reference, healed["data"], plain_loss)  # the default guard, its step-0 state in a temporary folder
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("elapsed_s", "windows_per_s")} for e in h]  # noqa: E731
    assert strip(on.history) == strip(off.history) and on.events == off.events == []


def test_the_spike_after_max_reverts_stops_with_the_settings_to_change(tmp_path):
    data = tiny_set()
    spike = batch_windows(data, SPIKE_AT)

    def spiking(outputs, batch):
        loss = plain_loss(outputs, batch)
        return loss * 100 if set(batch["window"].tolist()) == spike else loss

    with pytest.raises(InputError, match=r"training diverged: step 12: .*train\.max_reverts=0.*train\.lr"):
        run_fit(Pooled(), data, spiking, TrainConfig(**{**CFG.__dict__, "max_reverts": 0}),
                StateSaving(tmp_path / "state", {}, every_steps=EVERY))


@pytest.mark.parametrize("loss, mean, steps, expected", [
    (math.nan, 1.0, 50, "nonfinite"), (math.inf, None, 0, "nonfinite"), (-math.inf, 1.0, 50, "nonfinite"),
    (5.1, 1.0, 20, "spike"), (5.0, 1.0, 20, "ok"),  # strictly above factor × mean
    (50.0, 1.0, 19, "ok"),  # the running mean is not trusted before spike_warmup_steps steps
    (50.0, None, 30, "ok"), (50.0, 0.0, 30, "ok"),  # no mean, or none a factor can mean anything over
])
def test_judge(loss, mean, steps, expected):
    assert training_guard.judge(loss, mean, steps, TrainConfig()) == expected  # defaults: factor 5, warm-up 20


def test_judge_with_spike_detection_off():
    assert training_guard.judge(1e9, 1.0, 1000, TrainConfig(spike_factor=0.0)) == "ok"
    assert training_guard.judge(math.nan, 1.0, 1000, TrainConfig(spike_factor=0.0)) == "nonfinite"


@pytest.mark.parametrize("key, value", [("spike_factor", 0.5), ("spike_factor", -1), ("spike_lr_scale", 0),
                                        ("spike_lr_scale", 1.5), ("max_reverts", -1), ("spike_warmup_steps", -1)])
def test_impossible_guard_settings_are_refused(key, value):
    with pytest.raises(InputError, match=f"train.{key}"):
        load_config(None, [f"train.{key}={value}"])


class FakeWandb(types.ModuleType):
    """Records what Tracker hands wandb: init's arguments, every log call, the summary."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logs, self.summary, self.finished = [], [], {}, False
        self.metrics, self.torn_down_after_finish = [], False

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return types.SimpleNamespace(name=kwargs["name"], summary=self.summary, log=self.logs.append,
                                     define_metric=lambda *a, **k: self.metrics.append((a, k)),
                                     finish=lambda: setattr(self, "finished", True))

    def teardown(self):  # waits for wandb's service to flush the run's files: only after the run's finish()
        self.torn_down_after_finish = self.finished


def test_train_fold_heals_and_reports_to_metrics_the_log_the_progress_lines_and_wandb(trained_run, monkeypatch,
                                                                                      caplog, capsys):
    from foldnlp.steps.train_fold import train_fold
    from foldnlp.tasks.qa.task import QATask

    calls, original = [], QATask.loss

    def injected(self, outputs, batch):  # a NaN at the 3rd batch, a spike at the 8th (each once)
        calls.append(1)
        loss = original(self, outputs, batch)
        return loss * math.nan if len(calls) == 3 else loss * 100 if len(calls) == 8 else loss

    fake = FakeWandb()
    monkeypatch.setattr(QATask, "loss", injected)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = load_config(None, trained_run.settings("healed") + ["tracking.wandb=offline", "train.spike_warmup_steps=2",
                                                              "train.epochs=1"])
    with caplog.at_level(logging.WARNING, logger="foldnlp.training_guard"):
        metrics = train_fold(cfg, 0, progress=True)
    on_disk = json.loads(artifacts.RunPaths(trained_run.tmp / "outputs" / "healed").metrics(0).read_text())
    assert on_disk == json.loads(json.dumps(metrics))

    assert (metrics["nonfinite_steps"], metrics["reverts"], metrics["lr_scale"]) == (1, 1, 0.5)
    nonfinite, spike = metrics["events"]
    assert (nonfinite["kind"], nonfinite["step"], nonfinite["loss"]) == ("nonfinite", 3, None)
    assert (spike["kind"], spike["step"], spike["reverted_to"]) == ("spike", 8, 7)  # a state at every step
    warnings = [r.getMessage() for r in caplog.records]
    assert any("step 3: non-finite loss" in w for w in warnings)
    assert any("back to the training state of step 7" in w and "learning rate × 0.5" in w for w in warnings)
    for entry in metrics["history"]:
        assert entry["windows_per_s"] > 0 and "peak_memory_gib" not in entry  # peak memory is CUDA's only

    out, err = capsys.readouterr()
    evaluations = [line for line in out.splitlines() if "(epoch" in line]
    assert evaluations and all(" s in, " in line and "windows/s" in line for line in evaluations)
    lines = [line for line in err.splitlines() if line.startswith("train: ")]  # not a terminal: plain lines
    assert lines and all("loss=" in line and "lr=" in line and "windows_per_s=" in line for line in lines)
    assert "jaccard=" in lines[-1] and "best=" in lines[-1]

    (init,) = fake.inits
    assert (init["group"], init["name"], init["job_type"], init["mode"]) == ("healed", "healed-fold0", "fold0",
                                                                            "offline")
    assert fake.summary["best_jaccard"] == metrics["jaccard"] and fake.summary["reverts"] == 1 and fake.finished
    assert fake.torn_down_after_finish
    keys = set().union(*fake.logs)
    assert {"train/loss", "train/lr", "train/step", "valid/jaccard", "valid/best_jaccard", "perf/windows_per_s",
            "perf/elapsed_s", "guard/reverts", "guard/nonfinite_steps"} <= keys
    steps = [entry["train/step"] for entry in fake.logs if "train/loss" in entry]
    assert steps == list(range(1, len(steps) + 1))  # the spike's step was taken again from the state before it
