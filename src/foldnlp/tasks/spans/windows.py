"""Documents of words → token windows whose tokens carry their word, and window outputs → per-word scores.

Each document's words are tokenized once (is_split_into_words), so every token knows its word; windows of
features.max_len tokens overlapping by features.doc_stride then cut the token sequence (one window when it fits),
wrapped in the tokenizer's special tokens (their word is -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldnlp.batching import IGNORE_INDEX
from foldnlp.errors import InputError
from foldnlp.tasks.document.windows import MIN_PIECE_TOKENS, special_template

NO_WORD = -1


@dataclass
class WordWindows:
    input_ids: list[np.ndarray]  # one (n_tokens,) int64 array per window
    example_index: np.ndarray  # (n_windows,) the document of each window
    token_words: list[np.ndarray]  # per window, (n_tokens,) the word of each token (NO_WORD: special token)
    token_first: list[np.ndarray]  # per window, (n_tokens,) bool: the token is its word's first sub-token
    labels: list[np.ndarray] | None = None  # per window, (n_tokens,) BIO channel index or IGNORE_INDEX

    def __len__(self) -> int:
        return len(self.input_ids)


def check_settings(tokenizer, max_len: int, doc_stride: int) -> None:
    budget = max_len - special_template(tokenizer, pair=False).size
    if budget < MIN_PIECE_TOKENS or doc_stride >= budget:
        raise InputError(f"features.max_len {max_len} leaves {budget} tokens per window after the special tokens: "
                         f"it must leave at least {MIN_PIECE_TOKENS}, and features.doc_stride ({doc_stride}) must be "
                         "below it")


def window_starts(n_tokens: int, budget: int, doc_stride: int) -> list[int]:
    """Token offsets of the windows over n_tokens: step budget - doc_stride, the last window ending the document."""
    if n_tokens <= budget:
        return [0]
    step = budget - doc_stride
    return list(range(0, n_tokens - budget, step)) + [n_tokens - budget]


def build_word_windows(tokenizer, documents: list[list[str]], max_len: int, doc_stride: int,
                       word_labels: list[np.ndarray] | None = None, *, label_all_subtokens: bool,
                       begin_to_inside: np.ndarray | None = None) -> WordWindows:
    """Windows of every document (a list of its words). word_labels (with begin_to_inside, the I- channel of each
    channel's class, B-X → I-X and others unchanged) give per-token labels: a word's label on its first sub-token,
    and on the others its I- form (label_all_subtokens) or IGNORE_INDEX."""
    template = special_template(tokenizer, pair=False)
    budget = max_len - template.size
    prefix, suffix = np.asarray(template.prefix, np.int64), np.asarray(template.suffix, np.int64)
    no_word = np.full(len(prefix), NO_WORD), np.full(len(suffix), NO_WORD)
    encoded = tokenizer(documents, is_split_into_words=True, add_special_tokens=False) if documents else None
    out = WordWindows([], [], [], [], [] if word_labels is not None else None)
    for i in range(len(documents)):
        ids = np.asarray(encoded["input_ids"][i], dtype=np.int64)
        words = np.asarray([NO_WORD if w is None else w for w in encoded.word_ids(i)], dtype=np.int64)
        first = np.ones(len(words), dtype=bool)
        first[1:] = words[1:] != words[:-1]
        if word_labels is not None:
            token_labels = word_labels[i][words]
            if label_all_subtokens:
                token_labels = np.where(first, token_labels, begin_to_inside[token_labels])
            else:
                token_labels = np.where(first, token_labels, IGNORE_INDEX)
        for s in window_starts(len(ids), budget, doc_stride):
            e = s + budget
            out.input_ids.append(np.concatenate([prefix, ids[s:e], suffix]))
            out.token_words.append(np.concatenate([no_word[0], words[s:e], no_word[1]]))
            edges = np.zeros(len(prefix), bool), np.zeros(len(suffix), bool)
            out.token_first.append(np.concatenate([edges[0], first[s:e], edges[1]]))
            if word_labels is not None:
                ignore = np.full(len(prefix), IGNORE_INDEX), np.full(len(suffix), IGNORE_INDEX)
                out.labels.append(np.concatenate([ignore[0], token_labels[s:e], ignore[1]]))
            out.example_index.append(i)
    out.example_index = np.asarray(out.example_index, dtype=np.int64)
    return out


def word_log_probs(windows: WordWindows, logits: list[np.ndarray], n_words: np.ndarray, *,
                   all_subtokens: bool) -> list[np.ndarray]:
    """Per document, (n_words, C) log-probabilities: the mean probability over the word's sub-tokens (or its first
    sub-token only) in every window that holds them, so overlapping windows are averaged. A word no token covers
    (a character the tokenizer drops) is O for sure (channel 0)."""
    n_channels = logits[0].shape[1] if logits else 1
    sums = [np.zeros((n, n_channels)) for n in n_words]
    counts = [np.zeros(n) for n in n_words]
    for w, doc in enumerate(windows.example_index):
        values = logits[w].astype(np.float64)
        probs = np.exp(values - values.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        use = windows.token_words[w] != NO_WORD
        if not all_subtokens:
            use &= windows.token_first[w]
        np.add.at(sums[doc], windows.token_words[w][use], probs[use])
        np.add.at(counts[doc], windows.token_words[w][use], 1.0)
    out = []
    for total, count in zip(sums, counts):
        empty = count == 0
        total[empty, 0], count[empty] = 1.0, 1.0
        out.append(np.log(np.clip(total / count[:, None], 1e-30, 1.0)))
    return out
