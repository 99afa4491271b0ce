"""fit(): a plain training loop on accelerate, with evaluations within epochs, best-checkpoint keeping, resume, and
the healing of training_guard.py (non-finite steps skipped, loss spikes reverted)."""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import get_scheduler

from foldnlp import training_guard
from foldnlp.batching import TrainingSet, collate, epoch_batches, process_parts
from foldnlp.config import TrainConfig
from foldnlp.optimizers import make_optimizer
from foldnlp.precision import resolve_precision
from foldnlp.processes import Processes
from foldnlp.progress import Progress, write
from foldnlp.training_state import LoopPosition, load_state, save_state, torch_rng_tensors

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    score: float
    payload: Any = None  # what the caller keeps for the best evaluation (e.g. out-of-fold predictions)


@dataclass(frozen=True)
class StateSaving:
    """Where fit() keeps its resumable state (see training_state.py) and whether it starts from it."""

    folder: Path
    provenance: dict  # stored with the state; the caller checks it before resuming
    resume: bool = False
    every_steps: int = 50  # also saved every N optimizer steps besides at every evaluation; 0 = evaluations only


@dataclass
class FitResult:
    best_score: float = -math.inf
    best_step: int = 0
    best_payload: Any = None
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    windows_per_epoch: int = 0  # training windows an epoch draws (QA: every answer window, a share of the others)
    steps: int = 0  # optimizer steps trained, resumed ones included
    steps_per_epoch: int = 0
    events: list[dict] = field(default_factory=list)  # training_guard's skipped steps and reverts
    nonfinite_steps: int = 0
    reverts: int = 0
    lr_scale: float = 1.0  # every learning rate's factor at the end (train.spike_lr_scale per revert)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The Accelerator of a fit; in a multi-process launch (torchrun, accelerate launch) it starts the process group
    (gloo on CPUs, NCCL on GPUs, one GPU per process) and fit() wraps the model in DDP."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(cfg.precision, device)
    accelerator = Accelerator(mixed_precision="no" if precision == "fp32" else precision,
                              gradient_accumulation_steps=cfg.grad_accum_steps, cpu=device.type == "cpu")
    deepspeed = accelerator.state.deepspeed_plugin  # under `accelerate launch` with a DeepSpeed config file
    if deepspeed is not None:  # it needs the per-process batch, which accelerate reads off a DataLoader: none here
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
    return accelerator


def param_groups(model: torch.nn.Module, cfg: TrainConfig, head_prefixes: tuple[str, ...]) -> list[dict]:
    """AdamW groups: the fresh head at head_lr; no weight decay on biases and norm weights (1-D tensors)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (name.startswith(head_prefixes), param.ndim >= 2)
            groups.setdefault(key, []).append(param)
    return [{"params": params, "lr": cfg.head_lr if is_head else cfg.lr,
             "weight_decay": cfg.weight_decay if decays else 0.0}
            for (is_head, decays), params in groups.items()]


def fit(model, data: TrainingSet, cfg: TrainConfig, *, accelerator: Accelerator, pad_id: int,
        loss_fn: Callable[[Any, dict], torch.Tensor], evaluate: Callable[[Any], Evaluation],
        save_best: Callable[[Any, Evaluation], None], head_prefixes: tuple[str, ...], seed: int,
        metric_name: str = "score", higher_is_better: bool = True,
        log_metrics: Callable[[dict, int], None] = lambda m, s: None, progress: bool = True,
        state: StateSaving | None = None, on_evaluation: Callable[[int, float], None] | None = None) -> FitResult:
    """Train `model` on `data`; evaluate `evals_per_epoch` times per epoch; keep the best by evaluate().score
    (the highest, or the lowest when not higher_is_better).

    loss_fn(model_outputs, batch) -> scalar loss; batch holds input_ids, attention_mask and the targets.
    save_best(unwrapped_model, evaluation) runs for every new best; the best payload is returned (None when the
    run resumed after its best evaluation: the caller re-evaluates the saved best checkpoint).
    In a launch of several processes (accelerator.num_processes; see processes.py), cfg.batch_size is per process:
    each step trains one global batch of batch_size × processes windows, split between them (batching.
    process_parts); evaluate runs on every process and must give each the same score (inference.predict shares
    the work and gathers every output to each, so that every process takes the same best and early-stopping
    decisions); save_best and log_metrics run on process 0 only, the others waiting for save_best; the state is
    written by process 0 (with every process's random generators) and read by all.
    state: where the resumable state is saved (every state.every_steps steps, at each evaluation and, when spike
    detection is on, at step 0), and whether to continue from it; a spike goes back to it (a temporary folder when
    None).
    on_evaluation(step, score) runs after every evaluation and its state save; what it raises (a search pruning
    the run) ends training and propagates, with the progress bar closed.
    """
    processes = Processes(accelerator.process_index, accelerator.num_processes)
    if not processes.is_main:  # one process tracks: the others' figures are the same
        log_metrics = lambda metrics, step: None  # noqa: E731
    global_batch = cfg.batch_size * processes.count
    rng = np.random.default_rng(seed)  # the same on every process: they draw the same global batches
    first_epoch = process_parts(epoch_batches(data, global_batch, np.random.default_rng(seed)), processes.index,
                                processes.count)
    steps_per_epoch = math.ceil(len(first_epoch) / cfg.grad_accum_steps)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = max(1, round(steps_per_epoch / cfg.evals_per_epoch))
    optimizer = make_optimizer(param_groups(model, cfg, head_prefixes), cfg, accelerator.device)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    if processes.count > 1:  # the weights are process 0's now (DDP broadcast them): from here, each its own dropout
        set_seed(seed, device_specific=True)
    at = LoopPosition(processes=processes.count)
    if state is not None and state.resume:
        at = load_state(state.folder, model=accelerator.unwrap_model(model), optimizer=optimizer,
                        scheduler=scheduler, scaler=accelerator.scaler, process_index=processes.index)
        log.info("resumed from %s at step %d of %d (epoch %d, batch %d; best %s %s)", state.folder, at.step,
                 total_steps, at.epoch, at.batches_done, metric_name,
                 "none yet" if at.best_score is None else f"{at.best_score:.4f} at step {at.best_step}")
    windows_per_epoch = sum(batch_windows for _, batch_windows in first_epoch)
    on = "" if processes.count == 1 else (f", on {processes.count} processes ({cfg.batch_size} windows each, "
                                          f"global batch {global_batch})")
    log.info("training on %d of %d windows per epoch, %d steps (%d per epoch), evaluating every %d steps, %s%s",
             windows_per_epoch, len(data.input_ids), total_steps, steps_per_epoch, eval_every,
             accelerator.mixed_precision, on)
    best_payload = None
    started = time.perf_counter()
    # A spike goes back to the last saved state, so there must always be one: a fit without a state folder keeps
    # one in a temporary folder, and a fresh run saves one at step 0.
    temporary = tempfile.TemporaryDirectory(prefix="foldnlp-state-") if state is None and cfg.spike_factor else None
    if temporary is not None:
        state = StateSaving(Path(temporary.name) / "state", provenance={}, every_steps=0)
    # The state folder is shared by the processes of a launch (process 0 writes it, every process reads its own
    # random generators back), except a temporary one: each process keeps its own, which may not be on a shared disk.
    shared = temporary is None
    state_index = processes.index if shared else 0  # whose random generators this process reads back

    def save_state_now() -> None:
        if state is None:
            return
        generators = processes.gather(torch_rng_tensors()) if shared else [torch_rng_tensors()]
        if processes.is_main or not shared:
            snapshot = dataclasses.replace(at, elapsed_s=at.elapsed_s + time.perf_counter() - started)
            save_state(state.folder, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                       scaler=accelerator.scaler, position=snapshot, provenance=state.provenance,
                       rng_states=generators)
        if shared:
            processes.wait()

    if cfg.spike_factor and at.step == 0 and not at.batches_done:
        at.epoch_rng = rng.bit_generator.state  # what the first epoch's draw starts from, as the loop sets it
        save_state_now()
    show = progress and processes.is_main
    bar = Progress(total_steps, "train", "step", enabled=show, initial=at.step)
    speed = _Speed()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    model.train()
    losses_finite = True  # every batch of the step being accumulated had a finite loss
    while at.step < total_steps and not at.stopped_early:
        if at.epoch_rng is None:
            at.epoch_rng = rng.bit_generator.state
        else:  # resumed (or reverted) within this epoch: draw the same batches again, then skip those trained
            rng.bit_generator.state = at.epoch_rng
        batches = process_parts(epoch_batches(data, global_batch, rng), processes.index, processes.count)
        for batch_idx, batch_windows in batches[at.batches_done :]:
            where = [at.epoch, at.batches_done]  # the batch's place in the run, as skipped_batches holds them
            at.batches_done += 1
            if where in at.skipped_batches:
                continue  # it caused a loss spike: never trained again
            batch = {k: v.to(accelerator.device) for k, v in collate(data, batch_idx, pad_id).items()}
            with accelerator.accumulate(model):
                weight = len(batch_idx) * processes.count / batch_windows  # 1 for equal parts (see _forward_backward)
                loss = _forward_backward(model, accelerator, batch, loss_fn, weight)
                verdict = training_guard.judge(loss, at.loss_avg, at.step, cfg)
                if verdict == training_guard.SPIKE:
                    at = training_guard.revert(state.folder, at, loss=loss, batch=where, cfg=cfg, model=model,
                                               optimizer=optimizer, scheduler=scheduler, accelerator=accelerator,
                                               process_index=state_index)
                    log_metrics({"guard/reverts": at.reverts, "guard/lr_scale": at.lr_scale}, at.step)
                    bar.rewind(at.step)
                    losses_finite = True
                    break  # to the restored epoch and batch
                speed.trained(batch_windows)
                losses_finite = losses_finite and verdict == training_guard.OK
                if verdict == training_guard.OK:
                    at.loss_sum, at.loss_batches = at.loss_sum + loss, at.loss_batches + 1
                if not accelerator.sync_gradients:
                    continue
                skipped = _optimizer_step(model, optimizer, accelerator, cfg.max_grad_norm, losses_finite)
            if skipped is not None:
                training_guard.record_skipped_step(at, cause=skipped, loss=loss, batch=where,
                                                   by_scaler=accelerator.scaler is not None)
                log_metrics({"guard/nonfinite_steps": at.nonfinite_steps}, at.step + 1)
            losses_finite = True
            lr = backbone_lr(optimizer, cfg)  # the rate this step was taken with, before the schedule moves on
            scheduler.step()
            at.step += 1
            if verdict == training_guard.OK:
                at.loss_avg = loss if at.loss_avg is None else 0.9 * at.loss_avg + 0.1 * loss
            bar.set_postfix(**_postfix(at, lr, speed.per_s(), metric_name))  # before update: a plain line shows it
            bar.update(1)
            log_metrics({"train/loss": at.loss_avg, "train/lr": lr}, at.step)
            due = at.step % eval_every == 0 and at.step >= cfg.eval_start_epoch * steps_per_epoch
            if due or at.step == total_steps:
                interval = {"lr": lr, "elapsed_s": round(at.elapsed_s + time.perf_counter() - started, 1),
                            "windows_per_s": round(speed.per_s(), 1)}
                evaluation = _evaluate_and_keep(accelerator.unwrap_model(model), evaluate, save_best, at,
                                                steps_per_epoch, metric_name, higher_is_better, interval,
                                                accelerator.device, log_metrics, processes)
                if evaluation is not None:
                    best_payload = evaluation.payload
                model.train()
                if cfg.patience and at.since_best >= cfg.patience:
                    log.info("early stop: %d evaluations without a new best", at.since_best)
                    at.stopped_early = True
                save_state_now()
                if on_evaluation is not None:
                    _report_evaluation(on_evaluation, at.step, at.history[-1][metric_name], bar)
                speed.restart()  # the next interval's rate leaves the evaluation's time out
            elif state is not None and state.every_steps and at.step % state.every_steps == 0:
                save_state_now()
            if at.stopped_early or at.step >= total_steps:
                break
        else:
            at.epoch, at.batches_done, at.epoch_rng = at.epoch + 1, 0, None
    if temporary is not None:  # (when fit raises, the folder goes with the object, which removes it)
        temporary.cleanup()
    bar.close()
    best = (-math.inf if higher_is_better else math.inf) if at.best_score is None else at.best_score
    return FitResult(best, at.best_step, best_payload, at.stopped_early, at.history, windows_per_epoch, at.step,
                     steps_per_epoch, at.events, at.nonfinite_steps, at.reverts, at.lr_scale)


def _report_evaluation(on_evaluation: Callable[[int, float], None], step: int, score: float, bar: Progress) -> None:
    """Hand an evaluation's score to the caller's callback; if it stops the run by raising, close the bar first."""
    try:
        on_evaluation(step, score)
    except BaseException:
        bar.close()
        raise


def _forward_backward(model, accelerator: Accelerator, batch: dict, loss_fn, weight: float) -> float:
    """Forward and backward one batch (within accelerator.accumulate); returns its loss on the host, the mean over
    processes when there are several, so that every process judges the same value.

    weight = this part's windows × processes / its global batch's windows (batching.process_parts) scales the part's
    mean loss so that the mean over processes, which DDP's gradient averaging takes, is the global batch's mean
    loss; 1 for equal parts, and always in one process."""
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    loss = loss_fn(outputs, batch)
    if weight != 1.0:
        loss = loss * weight
    accelerator.backward(loss)
    if accelerator.num_processes > 1:
        return accelerator.reduce(loss.detach(), reduction="mean").item()
    return loss.item()


def _optimizer_step(model, optimizer, accelerator: Accelerator, max_grad_norm: float,
                    losses_finite: bool) -> str | None:
    """Clip and take the optimizer step of a complete accumulation, unless it would train on non-finite values;
    returns what was not finite when the step was not taken ('loss', 'gradient norm', 'fp16 overflow'), else None.

    The total gradient norm comes from clip_grad_norm_ (one tensor, read on the host once per step). With fp16 the
    grad scaler checks the gradients itself and must see its overflows to lower its scale: the step goes to it,
    which skips the update."""
    if accelerator.scaler is not None:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not optimizer.step_was_skipped:
            return None
        return "loss" if not losses_finite else "fp16 overflow"
    cause = "loss" if not losses_finite else None
    if cause is None:
        norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        if norm is not None and not torch.isfinite(torch.as_tensor(norm)).item():
            cause = "gradient norm"
        else:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return cause


class _Speed:
    """Training windows per second over the current evaluation interval (the evaluations' own time left out)."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self._windows, self._since = 0, time.perf_counter()

    def trained(self, windows: int) -> None:
        self._windows += windows

    def per_s(self) -> float:
        seconds = time.perf_counter() - self._since
        return self._windows / seconds if seconds > 0 else 0.0


def _postfix(at: LoopPosition, lr: float, windows_per_s: float, metric_name: str) -> dict[str, str]:
    """The progress bar's fields: running loss, learning rate, speed, and the last and best evaluations."""
    fields = {"loss": f"{at.loss_avg:.3f}" if at.loss_avg is not None else "nan", "lr": f"{lr:.2e}",
              "windows_per_s": f"{windows_per_s:.1f}"}
    if at.history:
        fields |= {metric_name: f"{at.history[-1][metric_name]:.4f}", "best": f"{at.best_score:.4f}"}
    return fields


def backbone_lr(optimizer, cfg: TrainConfig) -> float:
    """The backbone's learning rate now. Every parameter group follows the one schedule, so it is train.lr times
    the schedule's factor, read off any group that started above zero (the head's group runs at head_lr)."""
    for group in optimizer.param_groups:
        if group.get("initial_lr"):
            return cfg.lr * group["lr"] / group["initial_lr"]
    return 0.0


def _evaluate_and_keep(model, evaluate, save_best, at: LoopPosition, steps_per_epoch: int, metric_name: str,
                       higher_is_better: bool, interval: dict, device: torch.device, log_metrics,
                       processes: Processes) -> Evaluation | None:
    """Evaluate, save on a new best, log the outcome and update `at`; returns the evaluation if it is a new best.
    Every process evaluates (and so decides alike); process 0 saves, and the others wait for the save.

    interval: the backbone's learning rate of the step just taken (lr), the training seconds so far (elapsed_s) and
    the windows trained per second since the previous evaluation (windows_per_s). The history entry holds them,
    besides the score, with what a learning curve needs (the mean training loss over the batches since the previous
    evaluation) and, on CUDA, the interval's peak memory, its evaluation included (peak_memory_gib)."""
    evaluation = evaluate(model)
    score, epoch = evaluation.score, at.step / steps_per_epoch
    train_loss = at.loss_sum / at.loss_batches if at.loss_batches else None
    at.loss_sum, at.loss_batches = 0.0, 0
    entry = {"step": at.step, "epoch": round(epoch, 3), metric_name: score, "train_loss": train_loss, **interval}
    if device.type == "cuda":
        entry["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    at.history.append(entry)
    improved = at.best_score is None or (score > at.best_score if higher_is_better else score < at.best_score)
    previous = "" if at.best_score is None else f"{at.best_score:.4f} → "
    if improved:
        if processes.is_main:
            save_best(model, evaluation)
        processes.wait()
        at.best_score, at.best_step, at.since_best = score, at.step, 0
    else:
        at.since_best += 1
    perf = {k: entry[k] for k in ("elapsed_s", "windows_per_s", "peak_memory_gib") if k in entry}
    log_metrics({f"valid/{metric_name}": score, f"valid/best_{metric_name}": at.best_score, "epoch": epoch,
                 **{f"perf/{k}": v for k, v in perf.items()}}, at.step)
    memory = f", peak memory {entry['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in entry else ""
    how = f"{entry['elapsed_s']:.1f} s in, {entry['windows_per_s']:.1f} windows/s{memory}"
    if improved:
        write(f"step {at.step} (epoch {epoch:.2f}): {metric_name} {previous}{score:.4f} (best), saved; {how}")
        return evaluation
    write(f"step {at.step} (epoch {epoch:.2f}): {metric_name} {score:.4f} (best {at.best_score:.4f}), not saved; "
          f"{how}")
    return None
