"""One prediction loop for validation and test: batched, length-sorted, under inference_mode and autocast."""

from __future__ import annotations

import numpy as np
import torch

from foldnlp.batching import pad_batch
from foldnlp.precision import autocast
from foldnlp.processes import SINGLE, Processes
from foldnlp.progress import Progress

TOKEN, WINDOW = "token", "window"  # what an output has one row of: each token of the window, or the window


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Window indices in batches of similar length (longest first), so padding wastes almost no compute."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def predict(model, input_ids: list[np.ndarray], *, pad_id: int, batch_size: int, precision: str,
            outputs: dict[str, str], desc: str = "predict", progress: bool = True,
            processes: Processes = SINGLE) -> dict[str, list[np.ndarray]]:
    """Run the model over unpadded windows; returns, per output name, one float32 array per window in input order.

    outputs: name -> TOKEN or WINDOW. A TOKEN output (start_logits (B, T), token-class logits (B, T, C)) is cut to
    the window's length: (n_tokens,) or (n_tokens, C); a WINDOW output (class logits (B, C)) gives (C,) per window.
    processes: the processes of a launch that share the work, each calling predict on the same windows: the
    length-sorted batches are dealt out round-robin, and every process returns every window's outputs, each
    computed once, in the batch it would have had in one process (so the same values, whatever the processes).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = np.array([len(ids) for ids in input_ids], dtype=np.int64)
    batches = processes.deal(length_sorted_batches(lengths, batch_size))
    mine: dict[str, dict[int, np.ndarray]] = {name: {} for name in outputs}  # name -> window index -> values
    # Transient: the caller's own progress (training steps, test chunks) is what a log should show.
    bar = Progress(sum(len(b) for b in batches), desc, "win", enabled=progress, transient=True)
    for batch_idx in batches:
        batch = {k: v.to(device) for k, v in pad_batch([input_ids[i] for i in batch_idx], pad_id).items()}
        with autocast(precision, device):
            result = model(**batch)
        for name, kind in outputs.items():
            values = result[name].float().cpu().numpy()
            for row, i in enumerate(batch_idx):
                mine[name][int(i)] = values[row, : lengths[i]] if kind == TOKEN else values[row]
        bar.update(len(batch_idx))
    bar.close()
    model.train(was_training)
    results: dict[str, list] = {name: [None] * len(input_ids) for name in outputs}
    for share in processes.gather(mine):
        for name, by_window in share.items():
            for i, values in by_window.items():
                results[name][i] = values
    return results
