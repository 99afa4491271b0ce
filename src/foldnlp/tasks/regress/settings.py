"""The `regress:` config section: document regression with one or several targets (readability, essay scores),
optionally cut into grades by thresholds for quadratic weighted kappa."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from foldnlp.errors import InputError
from foldnlp.tasks.document.settings import DocumentSettings

LOSSES = ("mse", "smooth_l1")


@dataclass(frozen=True)
class RegressSettings(DocumentSettings):
    SECTION: ClassVar[str] = "regress"

    # The target columns (e.g. [target], or [cohesion, syntax, ...]).
    label_columns: list[str] = field(default_factory=lambda: ["target"])
    loss: str = "mse"  # mse | smooth_l1 (Huber with delta 1, on the scaled targets)
    # Train on standardised targets ((y - mean) / std per target, from each fold's training rows), so that one
    # learning rate suits targets of any scale and several targets weigh alike; predictions are scaled back.
    scale_targets: bool = True
    clip_to_train_range: bool = True  # clip predictions to each target's range in the fold's training rows
    target_bins: int = 10  # folds stratify on this many quantile bins of the (mean) target
    metric: str = "rmse"  # rmse | mcrmse (mean column-wise RMSE) | qwk (quadratic weighted kappa of grades)
    # Filled in by training, per fold, from its training rows (leave null): the targets' mean, std, min and max.
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    target_min: list[float] | None = None
    target_max: list[float] | None = None
    # qwk: the grades a prediction is cut into (null: training fills in the distinct target values of the training
    # file) and, per target, the K - 1 increasing cut points between them (null: midpoints, i.e. rounding to the
    # nearest grade). ensemble.py fits the cut points on the out-of-fold blend and writes them beside the
    # submission (<out>.decoding.json); pass them back with --set regress.thresholds=... to reuse them.
    grades: list[float] | None = None
    thresholds: list[list[float]] | None = None

    def check(self) -> None:
        super().check()
        from foldnlp.tasks.document.metrics import REGRESSION_METRICS

        if self.metric not in REGRESSION_METRICS:
            raise InputError(f"regress.metric: {self.metric!r} is not one of {', '.join(REGRESSION_METRICS)}")
        if self.loss not in LOSSES:
            raise InputError(f"regress.loss: {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.target_bins < 1:
            raise InputError(f"regress.target_bins must be positive, got {self.target_bins}")
        n = len(self.label_columns)
        for key in ("target_mean", "target_std", "target_min", "target_max"):
            value = getattr(self, key)
            if value is not None and len(value) != n:
                raise InputError(f"regress.{key}: {len(value)} values for {n} targets")
        if self.thresholds is not None:
            if self.grades is None:
                raise InputError("regress.thresholds need regress.grades")
            if len(self.thresholds) != n or any(len(t) != len(self.grades) - 1 or sorted(t) != list(t)
                                                for t in self.thresholds):
                raise InputError(f"regress.thresholds: one list of {len(self.grades) - 1} increasing cut points per "
                                 f"target ({n})")


SETTINGS = RegressSettings
# Folds keep the target's distribution: `stratum` is the quantile bin (regress.target_bins) of the mean target.
FOLD_DEFAULTS = {"stratify_by": "stratum", "group_by": None}
MOVED_KEYS: dict[str, str] = {}
