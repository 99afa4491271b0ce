"""fit(): a plain training loop on accelerate, with evaluations within epochs, best-checkpoint keeping and resume."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_scheduler

from foldnlp.config import TrainConfig
from foldnlp.inference import pad_batch
from foldnlp.precision import resolve_precision
from foldnlp.training_state import LoopPosition, load_state, save_state

log = logging.getLogger(__name__)


@dataclass
class TrainingSet:
    """Training windows: unpadded token ids, per-window targets, and which windows are negatives (no answer)."""

    input_ids: list[np.ndarray]
    targets: dict[str, np.ndarray]  # name -> (n_windows, ...) passed to the loss, e.g. start/end positions
    is_negative: np.ndarray  # (n_windows,) bool: subsampled to train.negative_fraction each epoch


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


@dataclass
class FitResult:
    best_score: float = -math.inf
    best_step: int = 0
    best_payload: Any = None
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(cfg.precision, device)
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision,
                       gradient_accumulation_steps=cfg.grad_accum_steps, cpu=device.type == "cpu")


def epoch_batches(data: TrainingSet, cfg: TrainConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches: every answer window plus a fresh sample of negatives, grouped by length.

    Windows are shuffled, cut into chunks of 50 batches, each chunk sorted by length and split into batches whose
    order is shuffled again: batches hold similar lengths (little padding) while the order stays random.
    """
    positives = np.flatnonzero(~data.is_negative)
    negatives = np.flatnonzero(data.is_negative)
    keep = rng.choice(negatives, size=round(cfg.negative_fraction * len(negatives)), replace=False)
    chosen = rng.permutation(np.concatenate([positives, keep]))
    lengths = np.array([len(data.input_ids[i]) for i in chosen])
    chunk = 50 * cfg.batch_size
    batches = []
    for lo in range(0, len(chosen), chunk):
        part = chosen[lo : lo + chunk][np.argsort(-lengths[lo : lo + chunk], kind="stable")]
        batches.extend(part[i : i + cfg.batch_size] for i in range(0, len(part), cfg.batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


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
        metric_name: str = "score", log_metrics: Callable[[dict, int], None] = lambda m, s: None,
        progress: bool = True, state: StateSaving | None = None) -> FitResult:
    """Train `model` on `data`; evaluate `evals_per_epoch` times per epoch; keep the best by evaluate().score.

    loss_fn(model_outputs, batch) -> scalar loss; batch holds input_ids, attention_mask and the targets.
    save_best(unwrapped_model, evaluation) runs for every new best; the best payload is returned (None when the
    run resumed after its best evaluation: the caller re-evaluates the saved best checkpoint).
    state: where the resumable state is saved every cfg.save_every_steps steps and at each evaluation, and
    whether to continue from it.
    """
    rng = np.random.default_rng(seed)
    n_batches = len(epoch_batches(data, cfg, np.random.default_rng(seed)))
    batches_per_process = math.ceil(n_batches / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_process / cfg.grad_accum_steps)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = max(1, round(steps_per_epoch / cfg.evals_per_epoch))
    optimizer = torch.optim.AdamW(param_groups(model, cfg, head_prefixes), lr=cfg.lr)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    at = LoopPosition()
    if state is not None and state.resume:
        at = load_state(state.folder, model=accelerator.unwrap_model(model), optimizer=optimizer,
                        scheduler=scheduler, scaler=accelerator.scaler)
        log.info("resumed from %s at step %d of %d (epoch %d, batch %d; best %s %s)", state.folder, at.step,
                 total_steps, at.epoch, at.batches_done, metric_name,
                 "none yet" if at.best_score is None else f"{at.best_score:.4f} at step {at.best_step}")
    log.info("training %d windows (%d with the answer), %d steps (%d per epoch), evaluating every %d steps, %s",
             len(data.input_ids), int((~data.is_negative).sum()), total_steps, steps_per_epoch, eval_every,
             accelerator.mixed_precision)
    best_payload = None
    started = time.perf_counter()

    def save_state_now() -> None:
        if state is None:
            return
        if accelerator.is_main_process:
            snapshot = dataclasses.replace(at, elapsed_s=at.elapsed_s + time.perf_counter() - started)
            save_state(state.folder, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                       scaler=accelerator.scaler, position=snapshot, provenance=state.provenance)
        accelerator.wait_for_everyone()

    show = progress and accelerator.is_local_main_process
    bar = tqdm(total=total_steps, initial=at.step, desc="train", unit="step", disable=not show)
    model.train()
    while at.step < total_steps and not at.stopped_early:
        if at.epoch_rng is None:
            at.epoch_rng = rng.bit_generator.state
        else:  # resumed within this epoch: draw the same batches again, then skip the ones already trained
            rng.bit_generator.state = at.epoch_rng
        batches = epoch_batches(data, cfg, rng)[accelerator.process_index :: accelerator.num_processes]
        for batch_idx in batches[at.batches_done :]:
            batch = _collate(data, batch_idx, pad_id, accelerator.device)
            loss = _train_batch(model, optimizer, accelerator, batch, loss_fn, cfg.max_grad_norm)
            at.batches_done += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            at.step += 1
            at.loss_avg = loss.item() if at.loss_avg is None else 0.9 * at.loss_avg + 0.1 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{at.loss_avg:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            log_metrics({"train/loss": at.loss_avg, "train/lr": scheduler.get_last_lr()[0]}, at.step)
            due = at.step % eval_every == 0 and at.step >= cfg.eval_start_epoch * steps_per_epoch
            if due or at.step == total_steps:
                evaluation = _evaluate_and_keep(accelerator.unwrap_model(model), evaluate, save_best, at,
                                                steps_per_epoch, metric_name, at.elapsed_s + time.perf_counter()
                                                - started, log_metrics)
                if evaluation is not None:
                    best_payload = evaluation.payload
                model.train()
                if cfg.patience and at.since_best >= cfg.patience:
                    log.info("early stop: %d evaluations without a new best", at.since_best)
                    at.stopped_early = True
                save_state_now()
            elif cfg.save_every_steps and at.step % cfg.save_every_steps == 0:
                save_state_now()
            if at.stopped_early or at.step >= total_steps:
                break
        else:
            at.epoch, at.batches_done, at.epoch_rng = at.epoch + 1, 0, None
    bar.close()
    best = -math.inf if at.best_score is None else at.best_score
    return FitResult(best, at.best_step, best_payload, at.stopped_early, at.history)


def _train_batch(model, optimizer, accelerator: Accelerator, batch: dict, loss_fn, max_grad_norm: float):
    """Forward and backward one batch; the optimizer steps only when gradient accumulation is complete."""
    with accelerator.accumulate(model):
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = loss_fn(outputs, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss


def _collate(data: TrainingSet, batch_idx: np.ndarray, pad_id: int, device) -> dict[str, torch.Tensor]:
    batch = pad_batch([data.input_ids[i] for i in batch_idx], pad_id)
    batch.update({name: torch.from_numpy(values[batch_idx]) for name, values in data.targets.items()})
    batch["is_negative"] = torch.from_numpy(data.is_negative[batch_idx])
    return {k: v.to(device) for k, v in batch.items()}


def _evaluate_and_keep(model, evaluate, save_best, at: LoopPosition, steps_per_epoch: int, metric_name: str,
                       elapsed_s: float, log_metrics) -> Evaluation | None:
    """Evaluate, save on a new best, log the outcome and update `at`; returns the evaluation if it is a new best."""
    evaluation = evaluate(model)
    score, epoch = evaluation.score, at.step / steps_per_epoch
    at.history.append({"step": at.step, "epoch": round(epoch, 3), metric_name: score, "elapsed_s": round(elapsed_s, 1)})
    log_metrics({f"valid/{metric_name}": score, "epoch": epoch}, at.step)
    if at.best_score is None or score > at.best_score:
        previous = "" if at.best_score is None else f"{at.best_score:.4f} → "
        save_best(model, evaluation)
        at.best_score, at.best_step, at.since_best = score, at.step, 0
        tqdm.write(f"step {at.step} (epoch {epoch:.2f}): {metric_name} {previous}{score:.4f} (best), saved")
        return evaluation
    at.since_best += 1
    tqdm.write(f"step {at.step} (epoch {epoch:.2f}): {metric_name} {score:.4f} (best {at.best_score:.4f}), not saved")
    return None
