"""train_fold.py --probe-batch-size: the largest per-device batch of an experiment's longest training windows that
trains (forward, backward, optimizer step) in this machine's memory, with the experiment's model, precision,
optimizer and gradient checkpointing. Nothing is trained or written."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

import numpy as np
import torch

from foldnlp import batch_probe
from foldnlp.batching import collate
from foldnlp.config import ExperimentConfig, TrainConfig
from foldnlp.modeling import load_tokenizer
from foldnlp.optimizers import check_available, make_optimizer
from foldnlp.tasks import get_task
from foldnlp.training import make_accelerator, param_groups

log = logging.getLogger(__name__)
GIB = 2**30


@dataclass(frozen=True)
class Probe:
    batch_size: int  # the largest per-device batch that fits (0: not even one window)
    window_tokens: int  # tokens of every window probed: the longest the config cuts (at most features.max_len)
    device: str  # "cuda:0 (NVIDIA A100-SXM4-40GB)" or "cpu"
    precision: str  # accelerate's mixed precision of the step ("no" = fp32)
    limit: int  # the largest size tried: PROBE_LIMIT, or the number of training windows when fewer
    # CUDA: "peak_bytes" (torch's peak allocation at batch_size) and "total_bytes" (the GPU's memory). CPU: the
    # rule's inputs "peak_1", "peak_2", "resident", "available" (bytes, see batch_probe.cpu_batch_size).
    memory: dict[str, int]

    def report(self, train: TrainConfig) -> list[str]:
        """Printable lines: what was probed, how, the answer, and when the configured batch is over it, the
        settings that keep its effective batch (train.batch_size × train.grad_accum_steps) by accumulation."""
        lines = [f"probe on {self.device} ({self.precision} precision): batches of copies of the longest training "
                 f"window, {self.window_tokens} tokens; sizes up to {self.limit}"]
        m = self.memory
        if "total_bytes" in m:
            lines.append("  method: forward + backward + optimizer step at 1, 2, 4, ... windows until out of memory, "
                         "then bisection")
            memory = (f"peak memory allocated by torch {m['peak_bytes'] / GIB:.2f} GiB of the GPU's "
                      f"{m['total_bytes'] / GIB:.2f} GiB" if self.batch_size else "batch 1 is out of memory")
        else:
            per_window = max(m["peak_2"] - m["peak_1"], batch_probe.MIN_WINDOW_BYTES)
            ceiling = m["resident"] + batch_probe.CPU_MEMORY_FRACTION * m["available"]
            lines.append(f"  method: peak resident memory of one step at batch 1 {m['peak_1'] / GIB:.3f} GiB, at "
                         f"batch 2 {m['peak_2'] / GIB:.3f} GiB: {per_window / 2**20:.1f} MiB a window (at least "
                         f"{batch_probe.MIN_WINDOW_BYTES >> 20} MiB); the largest batch whose estimate stays within "
                         f"the {m['resident'] / GIB:.2f} GiB resident + {batch_probe.CPU_MEMORY_FRACTION:.0%} of "
                         f"the {m['available'] / GIB:.2f} GiB available = {ceiling / GIB:.2f} GiB")
            estimate = m["peak_1"] + (self.batch_size - 1) * per_window
            memory = f"estimated peak memory {estimate / GIB:.2f} GiB" if self.batch_size else "batch 1 is over"
        if self.batch_size == self.limit:
            memory += "; the largest size tried: more may fit"
        lines.append(f"largest per-device batch: {self.batch_size} ({memory})")
        effective = train.batch_size * train.grad_accum_steps
        if 0 < self.batch_size < min(train.batch_size, self.limit):
            fitting = max(b for b in range(1, self.batch_size + 1) if effective % b == 0)
            lines.append(f"train.batch_size {train.batch_size} does not fit; the same effective batch of {effective}: "
                         f"--set train.batch_size={fitting} --set train.grad_accum_steps={effective // fitting}")
        return lines


def probe_batch_size(cfg: ExperimentConfig) -> Probe:
    """Probe the experiment's training step (see the module doc). The windows are cut from the training CSV (its
    first data.max_train_examples rows when set), all of them copies of the longest: training's batches are grouped
    by length, so its largest batches are of windows about that long."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_available(cfg.train.optimizer, device)
    task = get_task(cfg)
    frame = task.read_train()
    if cfg.data.max_train_examples is not None:
        frame = frame.head(cfg.data.max_train_examples)
    task = task.with_training_data(frame, frame)  # what a fold learns from its data (classes) shapes the head
    cfg = task.cfg
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    task.check_windows(tokenizer, frame)
    data = task.training_set(task.windows(tokenizer, frame, with_targets=True))
    lengths = np.array([len(ids) for ids in data.input_ids])
    longest = int(np.argmax(lengths))
    limit = min(batch_probe.PROBE_LIMIT, len(lengths))  # a batch of more windows than the data has is never drawn
    model = task.load_model(cfg.model.name_or_path, cfg.model)
    accelerator = make_accelerator(cfg.train)
    optimizer = make_optimizer(param_groups(model, cfg.train, task.head_prefixes), cfg.train, accelerator.device)
    model, optimizer = accelerator.prepare(model, optimizer)
    # The step is taken by the optimizer itself, not through fp16's grad scaler: a scaler skips the first steps
    # (their scaled gradients overflow) and the optimizer moments, allocated at the first step taken, would be
    # missing from the measure.
    inner = getattr(optimizer, "optimizer", optimizer)
    model.train()

    def step(batch_size: int) -> None:
        batch = {k: v.to(accelerator.device)
                 for k, v in collate(data, np.full(batch_size, longest), tokenizer.pad_token_id).items()}
        loss = task.loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]), batch)
        accelerator.backward(loss)
        inner.step()
        inner.zero_grad(set_to_none=True)

    def release() -> None:
        inner.zero_grad(set_to_none=True)
        gc.collect()  # tensors of a failed step caught in reference cycles
        torch.cuda.empty_cache()

    name = f"{accelerator.device} ({torch.cuda.get_device_name(accelerator.device)})" if device.type == "cuda" \
        else "cpu"
    log.info("probing batch sizes on %s at %d tokens a window", name, int(lengths[longest]))
    if device.type == "cuda":
        found = batch_probe.largest_fitting(batch_probe.cuda_fits(step, release), limit)
        peak = 0
        if found:
            torch.cuda.reset_peak_memory_stats(accelerator.device)
            step(found)
            peak = torch.cuda.max_memory_allocated(accelerator.device)
        total = torch.cuda.get_device_properties(accelerator.device).total_memory
        memory = {"peak_bytes": peak, "total_bytes": total}
    else:
        step(1)  # once before measuring: the optimizer moments and autograd's buffers are allocated at the first
        memory = {"peak_1": batch_probe.peak_resident_during(lambda: step(1)),
                  "peak_2": batch_probe.peak_resident_during(lambda: step(2)),
                  "resident": batch_probe.resident_bytes(), "available": batch_probe.available_bytes()}
        found = batch_probe.cpu_batch_size(memory["peak_1"], memory["peak_2"], memory["resident"],
                                           memory["available"], limit=limit)
    return Probe(found, int(lengths[longest]), name, accelerator.mixed_precision, limit, memory)
