"""Training that heals itself: non-finite steps are never taken, loss spikes go back to the last saved state.

- A step whose loss or gradient norm is not finite (NaN, inf) is not taken: no optimizer update, gradients zeroed,
  and counted. With fp16 the grad scaler finds such steps itself (and must, to lower its scale): the step goes to
  it, it skips the update, and the skip is counted here once.
- A batch whose loss exceeds train.spike_factor times the running mean of the loss (the progress bar's loss, an
  exponential moving average, trusted from train.spike_warmup_steps optimizer steps on) sends training back to the
  last saved training state (training_state.py: saved every runtime.save_every_steps steps, at every evaluation and
  at step 0), with every learning rate scaled by train.spike_lr_scale for the rest of the run; the batch that
  spiked is skipped when the replay reaches it again (an epoch's batch order is fixed by the saved epoch_rng). The
  spike after train.max_reverts reverts stops the fold with an InputError naming the settings.

Every event is logged as a warning and appended to LoopPosition.events, which a revert keeps (it restores the
weights, not the record) and every saved state carries, so a resumed run and metrics.json keep them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from foldnlp.config import TrainConfig
from foldnlp.errors import InputError
from foldnlp.training_state import LoopPosition, load_state

log = logging.getLogger(__name__)

OK, NONFINITE, SPIKE = "ok", "nonfinite", "spike"


def judge(loss: float, running_mean: float | None, steps_done: int, cfg: TrainConfig) -> str:
    """OK, NONFINITE or SPIKE for one batch's loss, given the running mean of the earlier ones (None before the
    first step) and the optimizer steps done. A spike needs a trusted, positive running mean."""
    if not math.isfinite(loss):
        return NONFINITE
    trusted = running_mean is not None and running_mean > 0 and steps_done >= cfg.spike_warmup_steps
    if cfg.spike_factor > 0 and trusted and loss > cfg.spike_factor * running_mean:
        return SPIKE
    return OK


def record_skipped_step(at: LoopPosition, *, cause: str, loss: float, batch: list[int], by_scaler: bool) -> None:
    """Count and log a step that was not taken (called before at.step moves on: the event's step is the one not
    taken). cause: 'loss' or 'gradient norm' (what was not finite), or 'fp16 overflow'."""
    at.nonfinite_steps += 1
    step = at.step + 1
    at.events.append({"step": step, "epoch": batch[0], "batch": batch[1], "kind": NONFINITE,
                      "loss": loss if math.isfinite(loss) else None, "running_mean": at.loss_avg,
                      "action": "skipped by the fp16 grad scaler" if by_scaler else "skipped",
                      "cause": cause, "lr_scale": at.lr_scale})
    what = {"loss": f"non-finite loss ({loss})", "gradient norm": f"non-finite gradient norm (loss {loss:.4g})",
            "fp16 overflow": f"fp16 gradient overflow (loss {loss:.4g})"}[cause]
    log.warning("step %d: %s; step skipped, no optimizer update (%d non-finite step(s) so far)", step, what,
                at.nonfinite_steps)


def revert(folder: Path, at: LoopPosition, *, loss: float, batch: list[int], cfg: TrainConfig, model, optimizer,
           scheduler, accelerator, process_index: int = 0) -> LoopPosition:
    """Back to the training state saved in `folder` after a spike of `loss` on `batch` ([epoch, batch index]):
    weights, optimizer, schedule, RNGs and data position restored, the healing record of `at` kept, with one more
    revert, that batch added to the skipped ones and the learning rates scaled (process_index: whose random
    generators to restore, as training_state.load_state). Returns the loop position to
    continue from; InputError once train.max_reverts reverts are spent."""
    step, ratio = at.step + 1, loss / at.loss_avg
    if at.reverts >= cfg.max_reverts:
        raise InputError(f"training diverged: step {step}: loss {loss:.4g} is {ratio:.1f} × the running mean "
                         f"{at.loss_avg:.4g}, after {at.reverts} revert(s) (train.max_reverts={cfg.max_reverts}): "
                         "lower train.lr, or raise train.spike_factor or train.max_reverts, then train the fold "
                         "again with --overwrite")
    saved = load_state(folder, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                       scaler=accelerator.scaler, process_index=process_index)
    # elapsed_s is what preceded this process (fit adds its own time), so it is the current one, not the saved one
    restored = dataclasses.replace(saved, events=at.events, nonfinite_steps=at.nonfinite_steps,
                                   reverts=at.reverts + 1, lr_scale=at.lr_scale * cfg.spike_lr_scale,
                                   skipped_batches=[*at.skipped_batches, batch], elapsed_s=at.elapsed_s)
    scale_schedule(optimizer, scheduler, restored.lr_scale)
    optimizer.zero_grad(set_to_none=True)  # the spike's gradients (and a partial accumulation's) are never stepped
    accelerator.step = 0  # states are saved at optimizer steps: the replay starts a fresh gradient accumulation
    restored.events.append({"step": step, "epoch": batch[0], "batch": batch[1], "kind": SPIKE, "loss": loss,
                            "running_mean": at.loss_avg, "action": "reverted", "reverted_to": restored.step,
                            "lr_scale": restored.lr_scale})
    log.warning("step %d: loss %.4g is %.1f × the running mean %.4g; back to the training state of step %d with "
                "the learning rate × %g (revert %d of at most %d), skipping batch %d of epoch %d", step, loss, ratio,
                at.loss_avg, restored.step, restored.lr_scale, restored.reverts, cfg.max_reverts, batch[1], batch[0])
    return restored


def scale_schedule(optimizer, scheduler, scale: float) -> None:
    """Set every group's scheduled peak rate (the scheduler's base_lrs) to `scale` × its initial rate, and its rate
    now with it: the warmup and decay go on from where they are, at the lower level. The scheduler's state (saved
    with the training state) holds the scaled base_lrs, so a resumed run keeps the scale."""
    scheduler.base_lrs = [group["initial_lr"] * scale for group in optimizer.param_groups]
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
