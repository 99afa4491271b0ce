"""The `qa:` config section: QA's external data, question and context limits, loss, sampling and decoding."""

from __future__ import annotations

from dataclasses import dataclass, field

from foldnlp.errors import InputError


@dataclass(frozen=True)
class PostprocessSettings:
    """The cleaning steps of a decoded answer (tasks/qa/postprocess.py), each switchable: ensemble.py prints the
    out-of-fold CV without each one that is on."""

    strip_whitespace: bool = True  # edge whitespace
    strip_punctuation: bool = True  # edge punctuation and stray symbols ('भारत।' -> 'भारत'), repeated
    strip_enclosing_pairs: bool = True  # a bracket or quote pair around the whole answer: '(1983)' -> '1983'
    keep_paired_brackets: bool = True  # an edge bracket paired inside the answer stays: 'मराठी (भाषा)'
    keep_abbreviation_dots: bool = True  # the final '.' of an abbreviation stays: 'ई.पू.', 'डॉ.', 'U.S.', 'St.'
    danda_keeps_dots: bool = True  # in a context whose sentences end with '।', a final '.' after a letter stays


@dataclass(frozen=True)
class DecodeSettings:
    max_answer_chars: int | None = 100
    max_answer_words: int | None = None
    n_best: int = 5  # candidates per test question written to submission.nbest.csv beside the submission
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)


@dataclass(frozen=True)
class QASettings:
    # External SQuAD-format JSON files as "language:path", mixed into training only (never validation).
    # Rows whose id is a validation or test id (translations of held-out questions) are dropped.
    external_squad: list[str] = field(default_factory=lambda: ["english:input/external/xquad.en.json"])
    max_question_tokens: int = 64  # longer questions are cut to this many tokens
    max_context_words: int | None = None  # keep only the first N whitespace-separated words of each context
    negative_fraction: float = 0.1  # share of answerless windows kept each epoch (resampled per epoch)
    negative_loss_weight: float = 1.0  # loss weight of answerless windows
    start_loss_weight: float = 0.5  # loss = w * CE(start) + (1 - w) * CE(end)
    decode: DecodeSettings = field(default_factory=DecodeSettings)

    def check(self) -> None:
        """Values that type-check but cannot work."""
        if not 0.0 <= self.negative_fraction <= 1.0 or not 0.0 <= self.start_loss_weight <= 1.0:
            raise InputError("qa.negative_fraction and qa.start_loss_weight must lie in [0, 1]")
        if self.max_question_tokens < 1:
            raise InputError(f"qa.max_question_tokens must be positive, got {self.max_question_tokens}")
        for entry in self.external_squad:
            if ":" not in entry:
                raise InputError(f"qa.external_squad entry {entry!r}: expected language:path, e.g. "
                                 "english:input/x.json")

    def external_files(self) -> list[tuple[str, str]]:
        """(language, path) of each external file."""
        return [tuple(entry.split(":", 1)) for entry in self.external_squad]


SETTINGS = QASettings
# One context never lands in two folds (its questions share the answer text), and languages spread evenly.
FOLD_DEFAULTS = {"stratify_by": "language", "group_by": "context"}
# Keys of configs written before QA moved into its own section: read from where they were, with a warning.
MOVED_KEYS = {"data.external_squad": "qa.external_squad", "features.max_question_tokens": "qa.max_question_tokens",
              "features.max_context_words": "qa.max_context_words", "train.negative_fraction": "qa.negative_fraction",
              "train.negative_loss_weight": "qa.negative_loss_weight",
              "train.start_loss_weight": "qa.start_loss_weight", "decode": "qa.decode"}
