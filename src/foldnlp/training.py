"""fit(): a plain training loop on accelerate, with evaluations within epochs, best-checkpoint keeping and resume."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import get_scheduler

from foldnlp.batching import TrainingSet, collate, epoch_batches
from foldnlp.config import TrainConfig
from foldnlp.precision import resolve_precision
from foldnlp.progress import Progress, write
from foldnlp.training_state import LoopPosition, load_state, save_state

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


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(cfg.precision, device)
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision,
                       gradient_accumulation_steps=cfg.grad_accum_steps, cpu=device.type == "cpu")


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
    state: where the resumable state is saved (every state.every_steps steps and at each evaluation), and
    whether to continue from it.
    on_evaluation(step, score) runs after every evaluation and its state save; what it raises (a search pruning
    the run) ends training and propagates, with the progress bar closed.
    """
    rng = np.random.default_rng(seed)
    first_epoch = epoch_batches(data, cfg.batch_size, np.random.default_rng(seed))
    n_batches = len(first_epoch)
    batches_per_process = math.ceil(n_batches / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_process / cfg.grad_accum_steps)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = max(1, round(steps_per_epoch / cfg.evals_per_epoch))
    optimizer = torch.optim.AdamW(param_groups(model, cfg, head_prefixes), lr=cfg.lr,
                                  betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
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
    log.info("training on %d of %d windows per epoch, %d steps (%d per epoch), evaluating every %d steps, %s",
             sum(len(b) for b in first_epoch), len(data.input_ids), total_steps, steps_per_epoch, eval_every,
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
    bar = Progress(total_steps, "train", "step", enabled=show, initial=at.step)
    model.train()
    while at.step < total_steps and not at.stopped_early:
        if at.epoch_rng is None:
            at.epoch_rng = rng.bit_generator.state
        else:  # resumed within this epoch: draw the same batches again, then skip the ones already trained
            rng.bit_generator.state = at.epoch_rng
        batches = epoch_batches(data, cfg.batch_size, rng)[accelerator.process_index :: accelerator.num_processes]
        for batch_idx in batches[at.batches_done :]:
            batch = {k: v.to(accelerator.device) for k, v in collate(data, batch_idx, pad_id).items()}
            loss = _train_batch(model, optimizer, accelerator, batch, loss_fn, cfg.max_grad_norm).item()
            at.batches_done += 1
            at.loss_sum, at.loss_batches = at.loss_sum + loss, at.loss_batches + 1
            if not accelerator.sync_gradients:
                continue
            lr = backbone_lr(optimizer, cfg)  # the rate this step was taken with, before the schedule moves on
            scheduler.step()
            at.step += 1
            at.loss_avg = loss if at.loss_avg is None else 0.9 * at.loss_avg + 0.1 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{at.loss_avg:.3f}", lr=f"{lr:.2e}")
            log_metrics({"train/loss": at.loss_avg, "train/lr": lr}, at.step)
            due = at.step % eval_every == 0 and at.step >= cfg.eval_start_epoch * steps_per_epoch
            if due or at.step == total_steps:
                evaluation = _evaluate_and_keep(accelerator.unwrap_model(model), evaluate, save_best, at,
                                                steps_per_epoch, metric_name, higher_is_better, lr,
                                                at.elapsed_s + time.perf_counter() - started, log_metrics)
                if evaluation is not None:
                    best_payload = evaluation.payload
                model.train()
                if cfg.patience and at.since_best >= cfg.patience:
                    log.info("early stop: %d evaluations without a new best", at.since_best)
                    at.stopped_early = True
                save_state_now()
                if on_evaluation is not None:
                    _report_evaluation(on_evaluation, at.step, at.history[-1][metric_name], bar)
            elif state is not None and state.every_steps and at.step % state.every_steps == 0:
                save_state_now()
            if at.stopped_early or at.step >= total_steps:
                break
        else:
            at.epoch, at.batches_done, at.epoch_rng = at.epoch + 1, 0, None
    bar.close()
    best = (-math.inf if higher_is_better else math.inf) if at.best_score is None else at.best_score
    return FitResult(best, at.best_step, best_payload, at.stopped_early, at.history)


def _report_evaluation(on_evaluation: Callable[[int, float], None], step: int, score: float, bar: Progress) -> None:
    """Hand an evaluation's score to the caller's callback; if it stops the run by raising, close the bar first."""
    try:
        on_evaluation(step, score)
    except BaseException:
        bar.close()
        raise


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


def backbone_lr(optimizer, cfg: TrainConfig) -> float:
    """The backbone's learning rate now. Every parameter group follows the one schedule, so it is train.lr times
    the schedule's factor, read off any group that started above zero (the head's group runs at head_lr)."""
    for group in optimizer.param_groups:
        if group.get("initial_lr"):
            return cfg.lr * group["lr"] / group["initial_lr"]
    return 0.0


def _evaluate_and_keep(model, evaluate, save_best, at: LoopPosition, steps_per_epoch: int, metric_name: str,
                       higher_is_better: bool, lr: float, elapsed_s: float, log_metrics) -> Evaluation | None:
    """Evaluate, save on a new best, log the outcome and update `at`; returns the evaluation if it is a new best.

    The history entry holds, besides the score, what a learning curve needs: the mean training loss over the
    batches since the previous evaluation and the backbone's learning rate of the step just taken."""
    evaluation = evaluate(model)
    score, epoch = evaluation.score, at.step / steps_per_epoch
    train_loss = at.loss_sum / at.loss_batches if at.loss_batches else None
    at.loss_sum, at.loss_batches = 0.0, 0
    at.history.append({"step": at.step, "epoch": round(epoch, 3), metric_name: score, "train_loss": train_loss,
                       "lr": lr, "elapsed_s": round(elapsed_s, 1)})
    log_metrics({f"valid/{metric_name}": score, "epoch": epoch}, at.step)
    improved = at.best_score is None or (score > at.best_score if higher_is_better else score < at.best_score)
    if improved:
        previous = "" if at.best_score is None else f"{at.best_score:.4f} → "
        save_best(model, evaluation)
        at.best_score, at.best_step, at.since_best = score, at.step, 0
        write(f"step {at.step} (epoch {epoch:.2f}): {metric_name} {previous}{score:.4f} (best), saved")
        return evaluation
    at.since_best += 1
    write(f"step {at.step} (epoch {epoch:.2f}): {metric_name} {score:.4f} (best {at.best_score:.4f}), not saved")
    return None
