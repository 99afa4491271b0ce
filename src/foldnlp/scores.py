"""Scores: the one output type of every task, which folds and experiments average and artifacts.py stores.

Per example, rows of a *unit* (a character of the context for QA, a word for span segmentation, the example itself
for classification) × C *channels* (QA: start, end; spans: the BIO classes; classification: the classes; regression:
the targets). Being per unit of the text rather than per token, scores of models with different tokenizers blend
directly. Their *kind* says what a value is and so how members blend: LOGPROB (log-probabilities, float16, blended
by averaging probabilities) or VALUE (regression predictions in the targets' units, float32, blended by their
weighted mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGPROB, VALUE = "logprob", "value"
# Log-probabilities need 3 significant digits (float16 halves the files); predictions keep float32, since a target
# may be large (a price) or need more digits than float16's 11 bits.
DTYPES = {LOGPROB: np.float16, VALUE: np.float32}


@dataclass(frozen=True)
class Scores:
    """The scores of many examples, stored flat (CSR style) to stay compact on disk.

    ids:      (n,) example ids, in the order of the examples.
    offsets:  (n + 1,) int64; example i owns rows offsets[i]:offsets[i + 1] of values, one per unit.
    values:   (offsets[-1], C) float16 log-probabilities (kind LOGPROB) or float32 predictions (kind VALUE).
    unit:     what a row is ("char", "word", "example").
    channels: the C channel names ("start", "end"; class names; target names).
    kind:     LOGPROB or VALUE.
    """

    ids: np.ndarray
    offsets: np.ndarray
    values: np.ndarray
    unit: str
    channels: tuple[str, ...]
    kind: str = LOGPROB

    def __post_init__(self):
        n = len(self.ids)
        assert self.offsets.shape == (n + 1,), (self.offsets.shape, n)
        assert self.values.shape == (int(self.offsets[-1]), len(self.channels)), \
            (self.values.shape, int(self.offsets[-1]), self.channels)
        assert self.kind in DTYPES, self.kind

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        """(n,) rows of each example."""
        return np.diff(self.offsets)

    def example(self, i: int) -> np.ndarray:
        """(rows of example i, C) view of its values."""
        return self.values[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def select(self, ids) -> Scores:
        """The examples with these ids (each present once), in that order."""
        position = {id_: i for i, id_ in enumerate(self.ids.tolist())}
        return self.from_lists(ids, [self.example(position[i]) for i in ids], self.unit, self.channels, self.kind)

    @classmethod
    def from_lists(cls, ids, arrays: list[np.ndarray], unit: str, channels, kind: str = LOGPROB) -> Scores:
        """Pack per-example (rows, C) arrays, in the order of ids, into one Scores (values cast to the kind's
        dtype)."""
        channels = tuple(channels)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        values = np.concatenate(arrays) if arrays else np.zeros((0, len(channels)))
        return cls(np.asarray(ids, dtype=object).astype(str), offsets, values.astype(DTYPES[kind]), unit, channels,
                   kind)


def concat_scores(parts: list[Scores]) -> Scores:
    """Join the scores of disjoint example sets (e.g. the out-of-fold outputs of every fold) into one."""
    first = parts[0]
    for part in parts[1:]:
        if (part.unit, part.channels, part.kind) != (first.unit, first.channels, first.kind):
            raise ValueError(f"cannot join {part.kind} scores per {part.unit} × {part.channels} to {first.kind} "
                             f"scores per {first.unit} × {first.channels}")
    shifts = np.concatenate([[0], np.cumsum([int(p.offsets[-1]) for p in parts])[:-1]]).astype(np.int64)
    offsets = np.concatenate([[0]] + [p.offsets[1:] + shift for p, shift in zip(parts, shifts)]).astype(np.int64)
    return Scores(np.concatenate([p.ids for p in parts]), offsets, np.concatenate([p.values for p in parts]),
                  first.unit, first.channels, first.kind)
