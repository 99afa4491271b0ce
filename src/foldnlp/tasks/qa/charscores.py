"""Tokenizer-independent QA scores: start/end log-probabilities over each context's characters (unit "char").

Every character takes the score of the token that covers it; where windows overlap, a character keeps the max.
Scores are normalised per example (log-softmax over the example's distinct context tokens, across all of its
windows), so models with different tokenizers, and different folds, can be averaged character by character.
Characters no window covered (truncated contexts, or spaces no token claims) hold NO_SCORE.
"""

from __future__ import annotations

import numpy as np

from foldnlp.scores import Scores

# Log-probability of a character no token covered: exp(-1e4) is 0 in any dtype, and -1e4 fits float16.
NO_SCORE = -1.0e4
UNIT, CHANNELS = "char", ("start", "end")


def window_logits_to_char_scores(ids, context_lengths, example_index: np.ndarray, context_offsets: list[np.ndarray],
                                 start_logits: list[np.ndarray], end_logits: list[np.ndarray]) -> Scores:
    """Map per-window token logits of many examples onto their contexts' characters.

    ids, context_lengths: one entry per example (characters of the context the windows were built on).
    example_index (n_windows,), context_offsets[w] (n_tokens, 2) with -1 for non-context tokens,
    start_logits[w] / end_logits[w] (n_tokens,): as produced by features.build_features and inference.predict.
    """
    starts, ends = [], []
    for i, windows in enumerate(_group_windows(example_index, len(ids))):
        keep = [context_offsets[w][:, 0] >= 0 for w in windows]
        offsets = np.concatenate([context_offsets[w][k] for w, k in zip(windows, keep)] or [np.zeros((0, 2), int)])
        layout = _TokenLayout(int(context_lengths[i]), offsets)  # shared by start and end: computed once
        starts.append(layout.char_scores(np.concatenate([start_logits[w][k] for w, k in zip(windows, keep)] or [[]])))
        ends.append(layout.char_scores(np.concatenate([end_logits[w][k] for w, k in zip(windows, keep)] or [[]])))
    return char_scores(ids, starts, ends)


def char_scores(ids, starts: list[np.ndarray], ends: list[np.ndarray]) -> Scores:
    """Pack per-example start and end arrays (each (len(context),)) into Scores per char."""
    return Scores.from_lists(ids, [np.stack([s, e], axis=1) for s, e in zip(starts, ends)], UNIT, CHANNELS)


def example_char_scores(n_chars: int, offsets: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """(n_chars,) float32 log-probabilities for one example from its context tokens over all windows.

    offsets (m, 2) and logits (m,) list context tokens window after window; a token seen in two overlapping
    windows keeps its larger logit. The softmax runs over the example's distinct tokens (all windows together,
    as one distribution), then every character of a token takes the token's log-probability.
    """
    return _TokenLayout(n_chars, offsets).char_scores(logits)


class _TokenLayout:
    """Where an example's context tokens (from all its windows) sit among its characters."""

    def __init__(self, n_chars: int, offsets: np.ndarray):
        self.n_chars = n_chars
        self.has_chars = offsets[:, 1] > offsets[:, 0]  # zero-width tokens cover no character: never answers
        offsets = offsets[self.has_chars]
        key = offsets[:, 0] * (n_chars + 1) + offsets[:, 1]
        # Windows overlap, so one token can appear several times: `inverse` maps each to its distinct token.
        distinct, self.inverse = np.unique(key, return_inverse=True)
        tok_start, tok_end = distinct // (n_chars + 1), distinct % (n_chars + 1)
        self.n_tokens, self.widths = len(distinct), tok_end - tok_start
        self.repeated = len(distinct) < len(key)  # some token was seen in two windows
        # Character positions of every distinct token, concatenated: its start plus 0..width-1.
        within = np.arange(self.widths.sum()) - np.repeat(np.cumsum(self.widths) - self.widths, self.widths)
        self.chars = np.repeat(tok_start, self.widths) + within

    def char_scores(self, logits: np.ndarray) -> np.ndarray:
        scores = np.full(self.n_chars, NO_SCORE, dtype=np.float32)
        if self.n_tokens == 0:
            return scores
        token_logit = np.full(self.n_tokens, -np.inf)
        values = np.asarray(logits, dtype=np.float64)[self.has_chars]
        if self.repeated:
            np.maximum.at(token_logit, self.inverse, values)  # a token seen twice keeps its larger logit
        else:
            token_logit[self.inverse] = values
        top = token_logit.max()
        log_prob = token_logit - (top + np.log(np.exp(token_logit - top).sum()))
        scores[self.chars] = np.repeat(log_prob, self.widths)
        return scores


def _group_windows(example_index: np.ndarray, n_examples: int) -> list[np.ndarray]:
    """Window indices of each example, in window order."""
    order = np.argsort(example_index, kind="stable")
    bounds = np.searchsorted(example_index[order], np.arange(n_examples + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_examples)]
