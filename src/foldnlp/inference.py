"""One prediction loop for validation and test: batched, length-sorted, under inference_mode and autocast."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from foldnlp.precision import autocast


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Window indices in batches of similar length (longest first), so padding wastes almost no compute."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(input_ids: list[np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of token-id arrays to the longest one; returns input_ids and attention_mask (B, T)."""
    width = max(len(ids) for ids in input_ids)
    batch = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, ids in enumerate(input_ids):
        batch[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return {"input_ids": torch.from_numpy(batch), "attention_mask": torch.from_numpy(mask)}


@torch.inference_mode()
def predict(model, input_ids: list[np.ndarray], *, pad_id: int, batch_size: int, precision: str,
            output_names: tuple[str, ...], desc: str = "predict", progress: bool = True) -> dict[str, list[np.ndarray]]:
    """Run the model over unpadded windows; returns, per output name, one float32 array per window in input order,
    cut to the window's length (for token outputs such as start_logits: (n_tokens,) or (n_tokens, n_labels))."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = np.array([len(ids) for ids in input_ids], dtype=np.int64)
    outputs: dict[str, list] = {name: [None] * len(input_ids) for name in output_names}
    bar = tqdm(total=len(input_ids), desc=desc, unit="win", disable=not progress, leave=False)
    for batch_idx in length_sorted_batches(lengths, batch_size):
        batch = {k: v.to(device) for k, v in pad_batch([input_ids[i] for i in batch_idx], pad_id).items()}
        with autocast(precision, device):
            result = model(**batch)
        for name in output_names:
            values = result[name].float().cpu().numpy()
            for row, i in enumerate(batch_idx):
                outputs[name][i] = values[row, : lengths[i]]
        bar.update(len(batch_idx))
    bar.close()
    model.train(was_training)
    return outputs
