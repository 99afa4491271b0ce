"""Training windows and their batches: the per-epoch sample, length-grouped batches, and padding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Label of padded positions of per-token targets: torch's cross-entropy ignores it.
IGNORE_INDEX = -100


@dataclass
class TrainingSet:
    """The training windows of a fold, as a task built them.

    input_ids:   one (n_tokens,) int64 array per window, unpadded.
    targets:     name -> per-window values, an (n_windows, ...) array (QA's start/end positions), or per-token
                 values, a list of one (n_tokens,) array per window (BIO tags), padded with IGNORE_INDEX in batches.
                 The task's loss reads them from the batch under the same names.
    keep_chance: (n_windows,) share of the windows like it kept in each epoch: 1 keeps a window every epoch; the
                 windows sharing a chance p < 1 are resampled every epoch, round(p · count) of them (an exact count,
                 so every epoch has the same number of steps).
    """

    input_ids: list[np.ndarray]
    targets: dict[str, np.ndarray | list[np.ndarray]]
    keep_chance: np.ndarray

    def __post_init__(self):
        n = len(self.input_ids)
        assert self.keep_chance.shape == (n,), (self.keep_chance.shape, n)
        assert all(len(values) == n for values in self.targets.values()), {k: len(v) for k, v in self.targets.items()}


def epoch_sample(data: TrainingSet, rng: np.random.Generator) -> np.ndarray:
    """Indices of the windows trained on this epoch (every always-kept window plus fresh samples), shuffled."""
    chosen = [np.flatnonzero(data.keep_chance >= 1.0)]
    for chance in np.unique(data.keep_chance[data.keep_chance < 1.0]):
        group = np.flatnonzero(data.keep_chance == chance)
        chosen.append(rng.choice(group, size=round(chance * len(group)), replace=False))
    return rng.permutation(np.concatenate(chosen))


def epoch_batches(data: TrainingSet, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of window indices, grouped by length.

    The epoch's windows are cut into chunks of 50 batches, each chunk sorted by length and split into batches whose
    order is shuffled again: batches hold similar lengths (little padding) while the order stays random.
    """
    chosen = epoch_sample(data, rng)
    lengths = np.array([len(data.input_ids[i]) for i in chosen])
    chunk = 50 * batch_size
    batches = []
    for lo in range(0, len(chosen), chunk):
        part = chosen[lo : lo + chunk][np.argsort(-lengths[lo : lo + chunk], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def process_parts(batches: list[np.ndarray], index: int, count: int) -> list[tuple[np.ndarray, int]]:
    """Process `index`'s part of each global batch of a launch of `count` processes, with the global batch's
    number of windows.

    Every process draws the same global batches (train.batch_size × count windows; the same seed) and takes one of
    `count` consecutive slices of each (its windows are of similar length: little padding), so every process trains
    the same number of batches, and a step's windows are those of one global batch, as in one process with that
    batch size. Slices differ by at most one window (an epoch's last, short batch); a global batch with fewer
    windows than processes (at most count - 1 windows an epoch, drawn afresh each epoch) is dropped. In one
    process the parts are the batches.
    """
    return [(np.array_split(batch, count)[index], len(batch)) for batch in batches if len(batch) >= count]


def pad_batch(input_ids: list[np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of token-id arrays to the longest one; returns input_ids and attention_mask (B, T)."""
    width = max(len(ids) for ids in input_ids)
    batch = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, ids in enumerate(input_ids):
        batch[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return {"input_ids": torch.from_numpy(batch), "attention_mask": torch.from_numpy(mask)}


def collate(data: TrainingSet, batch_idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (B, T), and every target: (B, ...) per window, (B, T) per token."""
    batch = pad_batch([data.input_ids[i] for i in batch_idx], pad_id)
    width = batch["input_ids"].shape[1]
    for name, values in data.targets.items():
        if isinstance(values, list):
            padded = np.full((len(batch_idx), width), IGNORE_INDEX, dtype=np.int64)
            for row, i in enumerate(batch_idx):
                padded[row, : len(values[i])] = values[i]
            batch[name] = torch.from_numpy(padded)
        else:
            batch[name] = torch.from_numpy(values[batch_idx])
    return batch
