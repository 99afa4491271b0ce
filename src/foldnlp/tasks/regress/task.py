"""Document regression (CommonLit readability, essay scoring): one value per target per document, scored by RMSE,
MCRMSE, or quadratic weighted kappa of the values cut into grades."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from foldnlp.errors import InputError, format_rows
from foldnlp.scores import VALUE
from foldnlp.tables import read_text_csv, require_columns
from foldnlp.tasks.base import DecodingFit, GroupScores
from foldnlp.tasks.document import metrics
from foldnlp.tasks.document.data import parse_floats, read_documents
from foldnlp.tasks.document.task import DocumentTask, mean_per_example, rows_of

RAW = "raw_"  # prediction columns: RAW + target, the continuous prediction (the target column holds the grade)


class RegressTask(DocumentTask):
    name = "regress"
    score_kind = VALUE
    decoding_key = "regress.thresholds"

    def __init__(self, cfg):
        super().__init__(cfg)
        s = self.settings
        self.metric_name = s.metric
        self.higher_is_better = metrics.REGRESSION_METRICS[s.metric].higher_is_better
        self.channels = tuple(s.label_columns)

    @property
    def is_graded(self) -> bool:
        return self.metric_name == "qwk"

    @property
    def grades(self) -> np.ndarray:
        """(K,) the grades predictions are cut into: the config's (a trained run's config holds them), else the
        distinct target values of the training file (score.py with the experiment's own config)."""
        if self.settings.grades is None:
            frame = read_documents(self.cfg.data.train_csv, self.settings, with_labels=True, with_text=False)
            self.settings = dataclasses.replace(self.settings, grades=[float(v) for v in np.unique(
                self.values(frame, self.cfg.data.train_csv))])
        return np.asarray(self.settings.grades)

    # ---- data -------------------------------------------------------------------------------------------------
    def values(self, examples: pd.DataFrame, path) -> np.ndarray:
        """(n, T) float64 targets in their own units."""
        return parse_floats(examples, self.settings.label_columns, path)

    def targets(self, examples: pd.DataFrame, path) -> np.ndarray:
        """(n, T) float32 training targets: standardised by the fold's statistics when regress.scale_targets."""
        y = self.values(examples, path)
        s = self.settings
        if s.scale_targets and s.target_mean is not None:
            y = (y - np.asarray(s.target_mean)) / np.asarray(s.target_std)
        return y.astype(np.float32)

    def with_training_data(self, examples: pd.DataFrame, train: pd.DataFrame) -> RegressTask:
        """Mean, std, min and max of each target over this fold's training rows only (the held-out fold's
        targets must not shape its predictions); qwk: the grades, from every training document."""
        y = self.values(train, self.cfg.data.train_csv)
        std = y.std(0)
        if (std == 0).any() and self.settings.scale_targets:
            constant = [c for c, v in zip(self.settings.label_columns, std) if v == 0]
            raise InputError(f"{self.cfg.data.train_csv}: target(s) {constant} are constant in the training rows")

        def floats(values):
            return [float(v) for v in values]

        settings = dataclasses.replace(self.settings, target_mean=floats(y.mean(0)), target_std=floats(std),
                                       target_min=floats(y.min(0)), target_max=floats(y.max(0)))
        if self.is_graded and settings.grades is None:
            all_values = self.values(examples, self.cfg.data.train_csv)
            settings = dataclasses.replace(settings, grades=floats(np.unique(all_values)))
        return RegressTask(dataclasses.replace(self.cfg, settings=settings))

    def fold_table(self, examples: pd.DataFrame) -> pd.DataFrame:
        """The examples with `stratum`: the quantile bin of the mean target (regress.target_bins bins)."""
        mean = self.values(examples, self.cfg.data.train_csv).mean(1)
        edges = np.unique(np.quantile(mean, np.linspace(0, 1, self.settings.target_bins + 1)[1:-1]))
        return examples.assign(stratum=np.searchsorted(edges, mean, side="right").astype(str))

    # ---- model ------------------------------------------------------------------------------------------------
    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """MSE or smooth-L1 on the (scaled) targets, averaged over targets and documents."""
        prediction, target = outputs["logits"].float(), batch["labels"].float()
        if self.settings.loss == "mse":
            return F.mse_loss(prediction, target)
        return F.smooth_l1_loss(prediction, target)

    def window_scores(self, example_index: np.ndarray, logits: np.ndarray, n_examples: int) -> np.ndarray:
        """Predictions in the targets' units: each window's output scaled back, averaged over a document's
        windows, and clipped to the fold's training range (regress.clip_to_train_range)."""
        s = self.settings
        values = logits * np.asarray(s.target_std) + np.asarray(s.target_mean) if s.scale_targets else logits
        values = mean_per_example(example_index, values, n_examples)
        if s.clip_to_train_range:
            values = np.clip(values, s.target_min, s.target_max)
        return values

    # ---- predictions ------------------------------------------------------------------------------------------
    def _thresholds(self, j: int) -> np.ndarray:
        s = self.settings
        if s.thresholds is not None:
            return np.asarray(s.thresholds[j])
        return metrics.default_thresholds(self.grades)

    def decode(self, examples: pd.DataFrame, scores, *, clean: bool = True) -> pd.DataFrame:
        """id, each target's prediction (qwk: the grade its value falls in) and RAW + target: the value."""
        values = scores.values.astype(np.float64)
        frame = pd.DataFrame({"id": scores.ids})
        for j, target in enumerate(self.channels):
            if self.is_graded:
                grades = self.grades
                graded = metrics.apply_thresholds(values[:, j], self._thresholds(j), grades)
                # Integer grades (an essay's 1-6) are written as integers, as the competition's files hold them.
                frame[target] = graded.astype(np.int64) if np.all(grades == np.round(grades)) else graded
            else:
                frame[target] = values[:, j]
        for j, target in enumerate(self.channels):
            frame[RAW + target] = values[:, j]
        return frame

    def postprocess_rules(self) -> dict[str, str]:
        """qwk with regress.thresholds set: the cut points, switched off for midpoints (rounding to the nearest
        grade). regress.clip_to_train_range is not among them: it clips each fold's predictions to that fold's own
        training range when the scores are made (window_scores), so the stored out-of-fold scores are already
        clipped and a blend cannot undo it; clipping the blend instead would need one range for every fold, which
        would hold the held-out fold's own targets."""
        if not self.is_graded or self.settings.thresholds is None:
            return {}
        return {"thresholds": "regress.thresholds=null"}

    def score(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> float:
        truth = self.values(rows_of(examples, predictions["id"]), "the answers")
        columns = list(self.channels)
        if self.is_graded:
            grades = self.grades
            predicted = predictions[columns].to_numpy(dtype=float)
            return float(np.mean([metrics.qwk(self._grade_index(truth[:, j], grades),
                                              self._grade_index(predicted[:, j], grades))
                                  for j in range(len(columns))]))
        return float(metrics.REGRESSION_METRICS[self.metric_name].fn(truth, predictions[columns].to_numpy(float)))

    @staticmethod
    def _grade_index(values: np.ndarray, grades: np.ndarray) -> np.ndarray:
        """(n,) position in grades of each value, which must be one of them (up to float rounding)."""
        index = np.abs(values[:, None] - grades[None, :]).argmin(axis=1)
        off = ~np.isclose(grades[index], values)
        if off.any():
            raise InputError(f"grades {format_rows(sorted(set(values[off].tolist())), 5)} are not among the "
                             f"training grades {grades.tolist()} (regress.grades)")
        return index

    def fit_decoding(self, examples: pd.DataFrame, oof_scores, folds: pd.Series) -> DecodingFit | None:
        """qwk: each target's cut points fit on the out-of-fold values. The report gives the CV with midpoints
        (rounding), with the fitted cut points (fit and scored on the same rows: optimistic), and the honest
        estimate: each fold cut by points fit on the other folds."""
        if not self.is_graded:
            return None
        grades = self.grades
        truth = self.values(rows_of(examples, oof_scores.ids), "training data")
        fold = pd.Series(oof_scores.ids).map(folds).to_numpy()
        values = oof_scores.values.astype(np.float64)
        fitted, lines = [], []
        for j, target in enumerate(self.channels):
            cut = metrics.fit_thresholds(truth[:, j], values[:, j], grades)
            fitted.append([round(float(c), 6) for c in cut])
            true_index = self._grade_index(truth[:, j], grades)
            before = metrics.qwk(true_index, self._grade_index(
                metrics.apply_thresholds(values[:, j], metrics.default_thresholds(grades), grades), grades))
            after = metrics.qwk(true_index, self._grade_index(metrics.apply_thresholds(values[:, j], cut, grades),
                                                              grades))
            honest = metrics.crossfit_qwk(truth[:, j], values[:, j], fold, grades)
            lines.append(f"  {target}: qwk {before:.4f} with midpoints → {after:.4f} fitted on all out-of-fold rows; "
                         f"{honest:.4f} when each fold is cut by points fit on the other folds (the honest gain: "
                         f"{honest - before:+.4f}); cut points {fitted[-1]}")
        task = RegressTask(dataclasses.replace(self.cfg, settings=dataclasses.replace(self.settings,
                                                                                      thresholds=fitted)))
        report = "thresholds fit on the out-of-fold blend (regress.thresholds):\n" + "\n".join(lines)
        return DecodingFit(task, report, {"regress.grades": grades.tolist(),
                                          "regress.thresholds": fitted})

    def cv_report(self, examples: pd.DataFrame, scores, folds: pd.Series) -> str:
        """The metric overall and per fold, and each target's RMSE."""
        predictions = self.decode(examples, scores)
        truth, raw = self._truth_and_raw(examples, predictions)
        per_target = "  ".join(f"{c}: {metrics.rmse(truth[:, j], raw[:, j]):.4f}" for j, c in enumerate(self.channels))
        return "\n".join([*self.cv_lines(examples, predictions, folds), f"RMSE per target: {per_target}"])

    def score_by_group(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """RMSE of each target's continuous prediction, as the CV report's per-target line."""
        truth, raw = self._truth_and_raw(examples, predictions)
        return GroupScores("target", "RMSE", False, pd.DataFrame(
            {"group": list(self.channels), "n": len(truth),
             "score": [metrics.rmse(truth[:, j], raw[:, j]) for j in range(len(self.channels))]}))

    def score_by_bucket(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """RMSE over every target per quantile bin of the mean true target (the bins of fold_table,
        regress.target_bins of them), q1 the lowest: labelled by rank, so that bins line up across experiments."""
        truth, raw = self._truth_and_raw(examples, predictions)
        bins = self.fold_table(rows_of(examples, predictions["id"]))["stratum"].astype(int).to_numpy()
        ranks = sorted(set(bins.tolist()))
        return GroupScores(f"quantile bin of the mean true target (of {self.settings.target_bins})", "RMSE", False,
                           pd.DataFrame({"group": [f"q{k + 1}" for k in ranks],
                                         "n": [int((bins == k).sum()) for k in ranks],
                                         "score": [metrics.rmse(truth[bins == k], raw[bins == k]) for k in ranks]}))

    def _truth_and_raw(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n, T) the true targets and the continuous predictions, in the predictions' order."""
        truth = self.values(rows_of(examples, predictions["id"]), "training data")
        return truth, predictions[[RAW + c for c in self.channels]].to_numpy(float)

    def submission_columns(self) -> list[str]:
        return list(self.channels)

    def submission(self, sample: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        by_id = predictions.set_index("id").loc[list(sample["id"])]
        return pd.DataFrame({"id": sample["id"].to_numpy(), **{c: by_id[c].to_numpy() for c in self.channels}})

    def read_submission(self, path) -> pd.DataFrame:
        frame = read_text_csv(path)
        require_columns(frame, ["id", *self.channels], path)
        values = parse_floats(frame, list(self.channels), path)
        out = pd.DataFrame({"id": frame["id"]})
        for j, c in enumerate(self.channels):
            out[c] = values[:, j]
            out[RAW + c] = values[:, j]
        return out


TASK = RegressTask
