"""The `classify:` config section: document classification, single-label (multi-class) or multi-label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from foldnlp.errors import InputError
from foldnlp.tasks.document.settings import COMBINES, DocumentSettings

SUBMITS = ("auto", "label", "probability")


@dataclass(frozen=True)
class ClassifySettings(DocumentSettings):
    SECTION: ClassVar[str] = "classify"

    # Multi-label: label_columns are one 0/1 column per label (Jigsaw style); otherwise one column of class labels,
    # strings or integers as given.
    multi_label: bool = False
    # The classes, in the order of the scores' channels. Leave null: training fills them in from the training file
    # (integers in numeric order, else sorted) and saves them with the weights, so inference needs no training file.
    classes: list[str] | None = None
    # How the windows of one document (truncation: windows) combine: "mean_logits" averages the windows' logits
    # (the renormalised geometric mean of their probabilities: a window sure of its class outweighs an unsure one,
    # which is what a review whose verdict sits in one paragraph needs); "mean_probs" averages probabilities.
    combine_windows: str = "mean_logits"
    label_smoothing: float = 0.0  # cross-entropy (and BCE) against (1 - ε) · one-hot + ε / C
    # Loss weight per class, in the order of `classes` (multi-label: of each label's binary cross-entropy term;
    # null: equal). balance_classes fills them with n / (C · n_c) from each fold's training rows (n_c: the rows of
    # class c, or having label c).
    class_weights: list[float] | None = None
    balance_classes: bool = False
    metric: str = "accuracy"  # accuracy | macro_f1 | roc_auc | log_loss (multi-label: all but accuracy)
    # What the submission holds: "label" the predicted class (multi-label: 0/1 at 0.5), "probability" the
    # probabilities (binary: of the second class, in the label column; otherwise one column per class), "auto"
    # probabilities for roc_auc and log_loss, labels otherwise.
    submit: str = "auto"

    def check(self) -> None:
        super().check()
        from foldnlp.tasks.document.metrics import CLASSIFICATION_METRICS

        if self.metric not in CLASSIFICATION_METRICS:
            raise InputError(f"classify.metric: {self.metric!r} is not one of {', '.join(CLASSIFICATION_METRICS)}")
        if self.multi_label and not CLASSIFICATION_METRICS[self.metric].multi_label_ok:
            raise InputError(f"classify.metric: {self.metric} does not apply to multi-label data; use macro_f1, "
                             "roc_auc or log_loss")
        if not self.multi_label and len(self.label_columns) != 1:
            raise InputError(f"classify.label_columns: a single-label task reads one label column, got "
                             f"{self.label_columns} (several 0/1 columns: set classify.multi_label: true)")
        if self.combine_windows not in COMBINES or self.submit not in SUBMITS:
            raise InputError(f"classify.combine_windows must be one of {', '.join(COMBINES)} and classify.submit one "
                             f"of {', '.join(SUBMITS)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"classify.label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise InputError(f"classify.classes must be distinct, got {self.classes}")
        if self.class_weights is not None:
            if any(w < 0 for w in self.class_weights) or (self.classes is not None
                                                          and len(self.class_weights) != len(self.classes)):
                raise InputError("classify.class_weights: one non-negative weight per class, in the order of "
                                 "classify.classes")

    @property
    def submits_probabilities(self) -> bool:
        return self.submit == "probability" or (self.submit == "auto" and self.metric in ("roc_auc", "log_loss"))


SETTINGS = ClassifySettings
# Folds keep each class's share (multi-label: each label's, by iterative stratification); `stratum` is the fold
# table's column of the label (or the tuple of a document's labels).
FOLD_DEFAULTS = {"stratify_by": "stratum", "group_by": None}
MOVED_KEYS: dict[str, str] = {}
