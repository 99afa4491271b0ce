"""The settings document tasks share (the `classify:` and `regress:` sections extend them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from foldnlp.errors import InputError

TRUNCATIONS = ("head", "head_tail", "windows")
POOLINGS = ("cls", "mean")
ACTIVATIONS = ("gelu", "relu", "tanh")
COMBINES = ("mean_logits", "mean_probs")


@dataclass(frozen=True)
class DocumentSettings:
    SECTION: ClassVar[str] = "document"  # the YAML section, named in messages

    text_column: str = "text"  # the document
    # A second, short segment (a query, a prompt) encoded as the tokenizer's pair after the document:
    # [CLS] document [SEP] pair [SEP]; cut to its first max_pair_tokens. None: single texts.
    text_pair_column: str | None = None
    max_pair_tokens: int = 64
    label_columns: list[str] = field(default_factory=lambda: ["label"])
    # How a document longer than a window is read: "head" keeps its first tokens; "head_tail" its first and last
    # tail_tokens tokens (a strong baseline for long reviews: the verdict is often at the end); "windows" covers it
    # with windows of features.max_len overlapping by features.doc_stride, whose outputs are combined per document.
    truncation: str = "head_tail"
    tail_tokens: int = 128
    pooling: str = "cls"  # "cls": the first token's hidden state; "mean": the mean over the real tokens
    head_dropout: float = 0.1  # before each layer of the head
    head_hidden: int = 0  # width of a hidden layer between the pooled vector and the output; 0: a linear head
    head_activation: str = "gelu"  # of the hidden layer

    def check(self) -> None:
        choices = {"truncation": (self.truncation, TRUNCATIONS), "pooling": (self.pooling, POOLINGS),
                   "head_activation": (self.head_activation, ACTIVATIONS)}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise InputError(f"{self.SECTION}.{key}: {value!r} is not one of {', '.join(allowed)}")
        if not self.label_columns or len(set(self.label_columns)) != len(self.label_columns):
            raise InputError(f"{self.SECTION}.label_columns must name one or more distinct columns, got "
                             f"{self.label_columns}")
        if {self.text_column, self.text_pair_column, "id"} & set(self.label_columns):
            raise InputError(f"{self.SECTION}.label_columns must not include id or the text columns")
        if not 0.0 <= self.head_dropout < 1.0:
            raise InputError(f"{self.SECTION}.head_dropout must lie in [0, 1), got {self.head_dropout}")
        if self.head_hidden < 0 or self.tail_tokens < 0 or self.max_pair_tokens < 1:
            raise InputError(f"{self.SECTION}.head_hidden and tail_tokens must be >= 0 and max_pair_tokens positive")
