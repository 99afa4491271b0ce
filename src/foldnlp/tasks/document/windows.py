"""Documents → windows of token ids: head, head+tail, or strided windows covering the whole document.

A window is the tokenizer's special-token template around a piece of the document (and, for pair input, the
short pair segment): [CLS] piece [SEP] (BERT) or <s> piece </s></s> pair </s> (XLM-R). The template is read off
the tokenizer once, by encoding a probe with and without special tokens, so any fast tokenizer works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldnlp.errors import InputError

MIN_PIECE_TOKENS = 8  # a window whose document part would be shorter than this is refused as a setting


@dataclass(frozen=True)
class WindowSettings:
    max_len: int  # tokens per window, special tokens and pair included
    doc_stride: int  # "windows": tokens shared by consecutive windows
    truncation: str  # "head" | "head_tail" | "windows"
    tail_tokens: int  # "head_tail": the document's last tokens kept
    max_pair_tokens: int  # the pair segment's first tokens kept


@dataclass(frozen=True)
class Template:
    """The special tokens around one or two segments: prefix A middle B suffix (middle is empty for one)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]

    def wrap(self, piece: list[int], pair: list[int] | None) -> np.ndarray:
        ids = [*self.prefix, *piece, *(self.middle + tuple(pair) if pair is not None else ()), *self.suffix]
        return np.asarray(ids, dtype=np.int64)

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


@dataclass
class DocumentWindows:
    """The windows of a list of documents (several per document only with truncation "windows")."""

    input_ids: list[np.ndarray]  # one (n_tokens,) int64 array per window
    example_index: np.ndarray  # (n_windows,) the document each window reads
    targets: np.ndarray | None = None  # (n_windows, ...) the document's target per window, for training

    def __len__(self) -> int:
        return len(self.input_ids)


def special_template(tokenizer, *, pair: bool) -> Template:
    """The tokenizer's special-token template, found by encoding a probe with and without special tokens."""
    first, second = "document", "query"
    bare_a = tokenizer(first, add_special_tokens=False)["input_ids"]
    bare_b = tokenizer(second, add_special_tokens=False)["input_ids"]
    full = tokenizer(first, second)["input_ids"] if pair else tokenizer(first)["input_ids"]
    a_at = _find(full, bare_a, 0)
    prefix, rest = full[:a_at], full[a_at + len(bare_a):]
    if not pair:
        return Template(tuple(prefix), (), tuple(rest))
    b_at = _find(rest, bare_b, 0)
    return Template(tuple(prefix), tuple(rest[:b_at]), tuple(rest[b_at + len(bare_b):]))


def _find(seq: list[int], part: list[int], start: int) -> int:
    for i in range(start, len(seq) - len(part) + 1):
        if seq[i : i + len(part)] == part:
            return i
    raise ValueError(f"cannot read the tokenizer's special-token template: {part} not in {seq}")


def piece_budget(settings: WindowSettings, template: Template, pair_tokens: int) -> int:
    """Document tokens a window can hold: max_len less the special tokens and the pair segment."""
    return settings.max_len - template.size - pair_tokens


def check_settings(tokenizer, settings: WindowSettings, *, pair: bool, section: str) -> None:
    """Refuse window settings that leave a window too little room for the document (InputError, one line)."""
    template = special_template(tokenizer, pair=pair)
    budget = piece_budget(settings, template, settings.max_pair_tokens if pair else 0)
    pair_part = f" and {settings.max_pair_tokens} of the pair ({section}.max_pair_tokens)" if pair else ""
    if budget < MIN_PIECE_TOKENS:
        raise InputError(f"features.max_len {settings.max_len} leaves {budget} tokens of the document after "
                         f"{template.size} special tokens{pair_part}: raise it")
    if settings.truncation == "head_tail" and settings.tail_tokens >= budget:
        raise InputError(f"{section}.tail_tokens {settings.tail_tokens} must be below the {budget} document tokens "
                         f"a window of features.max_len {settings.max_len} holds")
    if settings.truncation == "windows" and settings.doc_stride >= budget:
        raise InputError(f"features.doc_stride {settings.doc_stride} must be below the {budget} document tokens a "
                         f"window of features.max_len {settings.max_len} holds")


def document_pieces(tokens: list[int], budget: int, settings: WindowSettings) -> list[list[int]]:
    """The parts of one document's tokens that windows hold (budget: tokens per piece)."""
    if len(tokens) <= budget:
        return [tokens]
    if settings.truncation == "head":
        return [tokens[:budget]]
    if settings.truncation == "head_tail":
        head = budget - settings.tail_tokens
        return [tokens[:head] + tokens[len(tokens) - settings.tail_tokens:]]
    step = budget - settings.doc_stride
    starts = list(range(0, len(tokens) - budget, step)) + [len(tokens) - budget]  # the last window ends the text
    return [tokens[s : s + budget] for s in starts]


def build_windows(tokenizer, texts: list[str], pairs: list[str] | None, settings: WindowSettings) -> DocumentWindows:
    """Windows of every document, in document order."""
    template = special_template(tokenizer, pair=pairs is not None)
    tokens = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    pair_tokens = ([ids[: settings.max_pair_tokens] for ids in tokenizer(pairs, add_special_tokens=False)["input_ids"]]
                   if pairs is not None and texts else None)
    input_ids, example_index = [], []
    for i, doc in enumerate(tokens):
        pair = pair_tokens[i] if pair_tokens is not None else None
        budget = piece_budget(settings, template, len(pair) if pair is not None else 0)
        for piece in document_pieces(doc, budget, settings):
            input_ids.append(template.wrap(piece, pair))
            example_index.append(i)
    return DocumentWindows(input_ids, np.asarray(example_index, dtype=np.int64))
