"""QA features: (question, context) examples → overlapping token windows with character offsets and labels.

Vocabulary as in transformers' run_qa: an *example* is one question; its *features* are the windows of
`max_len` tokens that cover its context, consecutive windows sharing `doc_stride` tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from foldnlp.errors import InputError

CLS_INDEX = 0  # the first token (<s> / [CLS]): the label of windows that do not contain the answer


@dataclass(frozen=True)
class WindowSettings:
    max_len: int = 256  # tokens per window, question and special tokens included (features.max_len)
    doc_stride: int = 96  # tokens shared by consecutive windows of one context (features.doc_stride)
    max_question_tokens: int = 64  # longer questions are cut to this many tokens (qa.max_question_tokens)


@dataclass
class QAFeatures:
    """Windows of many examples; every array has one entry per window (ragged arrays are lists).

    input_ids:       list of (n_tokens,) int64 arrays, unpadded.
    context_offsets: list of (n_tokens, 2) int64 arrays: [start, end) character offsets into the example's
                     (possibly truncated) context for context tokens, (-1, -1) for question and special tokens.
    example_index:   (n_windows,) index of the window's example in the inputs.
    start_positions / end_positions: (n_windows,) gold token indices, CLS_INDEX where the answer is not inside
                     the window; None when built without answers.
    """

    input_ids: list[np.ndarray]
    context_offsets: list[np.ndarray]
    example_index: np.ndarray
    start_positions: np.ndarray | None = None
    end_positions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(ids) for ids in self.input_ids], dtype=np.int64)

    @property
    def has_answer(self) -> np.ndarray:
        """(n_windows,) bool: the window contains the whole answer (needs labels)."""
        return self.start_positions != CLS_INDEX


def truncate_context(context: str, max_words: int | None) -> str:
    """The first `max_words` whitespace-separated words of a context, as a prefix (so offsets stay valid)."""
    if max_words is None:
        return context
    match = None
    for count, match in enumerate(re.finditer(r"\S+", context), start=1):
        if count == max_words:
            return context[: match.end()]
    return context


def build_features(tokenizer, questions, contexts, cfg: WindowSettings, answer_starts=None,
                   answer_texts=None) -> QAFeatures:
    """Tokenize examples into windows; with answers, label each window with the answer's token span.

    `contexts` must already be truncated with truncate_context (offsets refer to the strings given here).
    """
    questions = check_window_settings(tokenizer, questions, cfg)
    enc = tokenizer(
        questions, list(contexts), truncation="only_second", max_length=cfg.max_len, stride=cfg.doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding=False,
        # Not needed (masks are rebuilt per batch) and, as Python lists, ~100 bytes per token of a long test set.
        return_attention_mask=False, return_token_type_ids=False,
    )
    example_index = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    input_ids, context_offsets = [], []
    for w in range(len(example_index)):
        offsets = np.asarray(enc["offset_mapping"][w], dtype=np.int64).reshape(-1, 2)
        is_context = np.array([s == 1 for s in enc.sequence_ids(w)])
        offsets[~is_context] = -1
        input_ids.append(np.asarray(enc["input_ids"][w], dtype=np.int64))
        context_offsets.append(offsets)
    features = QAFeatures(input_ids, context_offsets, example_index)
    if answer_starts is not None:
        starts = np.asarray(answer_starts, dtype=np.int64)[example_index]
        ends = starts + np.array([len(answer_texts[i]) for i in example_index], dtype=np.int64)
        labels = [label_window(offsets, s, e) for offsets, s, e in zip(context_offsets, starts, ends)]
        features.start_positions = np.array([s for s, _ in labels], dtype=np.int64)
        features.end_positions = np.array([e for _, e in labels], dtype=np.int64)
    return features


def check_window_settings(tokenizer, questions, cfg: WindowSettings) -> list[str]:
    """The questions as windows hold them (stripped, cut to max_question_tokens), after checking that every window
    still has room for more context tokens than the stride (InputError naming the settings otherwise)."""
    questions = _truncate_questions(tokenizer, [q.strip() for q in questions], cfg.max_question_tokens)
    _check_stride_fits(tokenizer, questions, cfg)
    return questions


def label_window(offsets: np.ndarray, answer_start: int, answer_end: int) -> tuple[int, int]:
    """Gold (start_token, end_token) of the answer chars [answer_start, answer_end) in one window.

    The start token is the last context token starting at or before the answer's first character, the end token
    the first context token ending at or after its last one; (CLS_INDEX, CLS_INDEX) unless both lie in the window.
    """
    context_tokens = np.flatnonzero(offsets[:, 0] >= 0)
    if len(context_tokens) == 0:
        return CLS_INDEX, CLS_INDEX
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first, 0] > answer_start or offsets[last, 1] < answer_end:
        return CLS_INDEX, CLS_INDEX
    tok_starts, tok_ends = offsets[first : last + 1, 0], offsets[first : last + 1, 1]
    start = first + int(np.searchsorted(tok_starts, answer_start, side="right")) - 1
    end = first + int(np.searchsorted(tok_ends, answer_end, side="left"))
    return start, end


def _truncate_questions(tokenizer, questions: list[str], max_tokens: int) -> list[str]:
    """Cut each question after its first `max_tokens` tokens (a question longer than a window cannot be used)."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    cut = []
    for question, offsets in zip(questions, enc["offset_mapping"]):
        cut.append(question if len(offsets) <= max_tokens else question[: offsets[max_tokens - 1][1]])
    return cut


def _check_stride_fits(tokenizer, questions: list[str], cfg: WindowSettings) -> None:
    """A window must hold the question, the special tokens and more context tokens than the stride."""
    longest = max((len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]), default=0)
    room = cfg.max_len - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if cfg.doc_stride >= room:
        raise InputError(
            f"features.doc_stride={cfg.doc_stride} cannot work with features.max_len={cfg.max_len}: the longest "
            f"question takes {longest} tokens, leaving {room} for context; choose doc_stride < {room}, a larger "
            f"max_len, or a smaller qa.max_question_tokens")
