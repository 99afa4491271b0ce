"""The `spans:` config section: span segmentation of long documents (Feedback Prize 2021 essays, NER)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from foldnlp.errors import InputError

FORMATS = ("auto", "feedback", "bio")


@dataclass(frozen=True)
class DecodeSettings:
    """Which decoded spans are kept: a class's spans need at least min_words words and a mean probability of the
    class of at least min_mean_prob. class_rules override them per class as "Class:min_words:min_mean_prob"
    (ensemble.py fits them on the out-of-fold blend and writes them to <out>.decoding.json)."""

    min_words: int = 1
    min_mean_prob: float = 0.0
    class_rules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpansSettings:
    # "feedback": data.train_csv is a Feedback Prize train.csv of character offsets, the essays <id>.txt in
    # texts_dir (default train/ beside it), the test a folder of essays; "bio": token<TAB>tag files (CoNLL, IL-NER),
    # sentences grouped into documents; "auto": bio for a .txt/.conll/.tsv/.bio file, else feedback.
    format: str = "auto"
    texts_dir: str | None = None
    sentences_per_document: int = 8  # bio: consecutive sentences per document
    # Label every sub-token of a word (B- on its first, I- on the rest) and score a word by the mean over its
    # sub-tokens; false: label and score the first sub-token only.
    label_all_subtokens: bool = True
    # The classes (e.g. Lead, Claim, ...; PER, LOC, ...): null, training fills in the distinct classes of the
    # training file and saves them with the weights.
    classes: list[str] | None = None
    decode: DecodeSettings = field(default_factory=DecodeSettings)

    def check(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"spans.format: {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise InputError(f"spans.classes must be distinct, got {self.classes}")
        if self.sentences_per_document < 1 or self.decode.min_words < 1:
            raise InputError("spans.sentences_per_document and spans.decode.min_words must be positive")
        for rule in self.decode.class_rules:
            parts = rule.rsplit(":", 2)
            try:
                ok = len(parts) == 3 and int(parts[1]) >= 1 and 0.0 <= float(parts[2]) <= 1.0
            except ValueError:
                ok = False
            if not ok:
                raise InputError(f"spans.decode.class_rules entry {rule!r}: expected Class:min_words:min_mean_prob, "
                                 "e.g. Claim:3:0.5")

    def layout(self, train_path: str) -> str:
        """The format of the training file: the setting, or from its name."""
        if self.format != "auto":
            return self.format
        return "bio" if PurePath(train_path).suffix.lower() in (".txt", ".conll", ".tsv", ".bio") else "feedback"


def data_defaults(data: dict) -> dict:
    """The competition folder's layout: with only data.train_csv set, the test essays are test/ beside it and the
    sample submission sample_submission.csv beside that."""
    train = data.get("train_csv")
    if not train or "test_csv" in data or PurePath(train).suffix.lower() != ".csv":
        return {}
    return {"test_csv": str(PurePath(train).with_name("test"))}


SETTINGS = SpansSettings
# `stratum`: the tuple of classes a document holds (iterative stratification shares each class's documents out).
FOLD_DEFAULTS = {"stratify_by": "stratum", "group_by": None}
MOVED_KEYS: dict[str, str] = {}
