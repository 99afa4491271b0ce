"""Document classification (IMDB sentiment, topic, AI-text detection): one class per document, or several labels
(multi-label), scored by the metric the config names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from foldnlp.errors import InputError, format_rows
from foldnlp.tables import read_text_csv, refuse_bad_cells, require_columns, row_labels
from foldnlp.tasks.base import GroupScores
from foldnlp.tasks.document.data import parse_binary, read_documents, sorted_labels
from foldnlp.tasks.document.metrics import CLASSIFICATION_METRICS
from foldnlp.tasks.document.task import DocumentTask, mean_per_example, rows_of

PROB = "prob_"  # prediction columns: PROB + class, the probability of each class (multi-label: of each label)


class ClassifyTask(DocumentTask):
    name = "classify"

    def __init__(self, cfg):
        super().__init__(cfg)
        s = self.settings
        self.metric_name = s.metric
        self.higher_is_better = CLASSIFICATION_METRICS[s.metric].higher_is_better
        self.decoding_key = "classify.submit"
        # Known once training filled them in (with_training_data); a saved run's config always has them.
        classes = s.label_columns if s.multi_label else s.classes
        self.channels = tuple(classes) if classes else None
        self.label_column = s.label_columns[0]

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes in channel order: the config's (a trained run's config holds them), else the training
        file's labels, read as training reads them (score.py with the experiment's own config)."""
        if self.channels is None:
            frame = read_documents(self.cfg.data.train_csv, self.settings, with_labels=True, with_text=False)
            self.channels = tuple(sorted_labels(frame[self.label_column]))
        return self.channels

    # ---- data -------------------------------------------------------------------------------------------------
    def with_training_data(self, examples: pd.DataFrame, train: pd.DataFrame) -> ClassifyTask:
        """The classes from every training document (a rare class missing from one fold's training part must still
        be a channel), and balanced class weights from this fold's training rows."""
        s = self.settings
        classes = list(s.label_columns) if s.multi_label else sorted_labels(examples[self.label_column])
        if len(classes) < 2 and not s.multi_label:
            raise InputError(f"{self.cfg.data.train_csv}: column '{self.label_column}' holds one class only "
                             f"({classes[0]!r}); classification needs at least two")
        if s.classes is not None and not s.multi_label and set(s.classes) != set(classes):
            raise InputError(f"classify.classes {s.classes} differ from the labels of {self.cfg.data.train_csv} "
                             f"({classes}): fix the config or leave classify.classes null")
        settings = dataclasses.replace(s, classes=list(s.classes or classes))
        if s.balance_classes:
            counts = self._class_counts(train, settings.classes)
            weights = len(train) / (len(counts) * np.maximum(counts, 1))
            settings = dataclasses.replace(settings, class_weights=[round(float(w), 6) for w in weights])
        return ClassifyTask(dataclasses.replace(self.cfg, settings=settings))

    def _class_counts(self, frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
        if self.settings.multi_label:
            return parse_binary(frame, self.settings.label_columns, self.cfg.data.train_csv).sum(0)
        labels = frame[self.label_column].str.strip()
        return np.array([(labels == c).sum() for c in classes], dtype=float)

    def targets(self, examples: pd.DataFrame, path) -> np.ndarray:
        """Single-label: (n,) int64 class index; multi-label: (n, C) float32 0/1."""
        if self.settings.multi_label:
            return parse_binary(examples, self.settings.label_columns, path)
        if self.channels is None:  # reading the training file before the classes are known: any label is fine
            return np.zeros(len(examples), dtype=np.int64)
        index = {c: i for i, c in enumerate(self.classes)}
        labels = examples[self.label_column].str.strip()
        found = labels.map(index)
        unknown = found.isna().to_numpy()
        if unknown.any():
            rows = format_rows(row_labels(examples, np.flatnonzero(unknown)))
            raise InputError(f"{path}: column '{self.label_column}' holds label(s) "
                             f"{format_rows(sorted(set(labels[unknown])), 5)} that are not training classes "
                             f"{list(self.classes)}, in {unknown.sum()} row(s): {rows}")
        return found.to_numpy(dtype=np.int64)

    def fold_table(self, examples: pd.DataFrame) -> pd.DataFrame:
        """The examples with `stratum`: the label, or (multi-label) the tuple of the document's labels."""
        s = self.settings
        if s.multi_label:
            present = parse_binary(examples, s.label_columns, self.cfg.data.train_csv) > 0
            strata = [tuple(c for c, on in zip(s.label_columns, row) if on) for row in present]
        else:
            strata = examples[self.label_column].str.strip().tolist()
        return examples.assign(stratum=pd.Series(strata, index=examples.index, dtype=object))

    # ---- model ------------------------------------------------------------------------------------------------
    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """Cross-entropy with label smoothing (multi-label: binary cross-entropy per label against smoothed 0/1
        targets), weighted per class by classify.class_weights."""
        s = self.settings
        logits = outputs["logits"].float()
        weights = (torch.tensor(s.class_weights, dtype=torch.float32, device=logits.device)
                   if s.class_weights is not None else None)
        if not s.multi_label:
            return F.cross_entropy(logits, batch["labels"], weight=weights, label_smoothing=s.label_smoothing)
        target = batch["labels"].float() * (1 - s.label_smoothing) + s.label_smoothing / 2
        per_label = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if weights is not None:
            per_label = per_label * weights
        return per_label.mean()

    def window_scores(self, example_index: np.ndarray, logits: np.ndarray, n_examples: int) -> np.ndarray:
        """Log-probabilities per class (multi-label: log P(label) per label) from the windows' logits."""
        log_probabilities = _log_sigmoid if self.settings.multi_label else _log_softmax
        if self.settings.combine_windows == "mean_logits":
            return log_probabilities(mean_per_example(example_index, logits, n_examples))
        probs = np.exp(log_probabilities(logits))
        return np.log(np.clip(mean_per_example(example_index, probs, n_examples), 1e-30, 1.0))

    # ---- predictions ------------------------------------------------------------------------------------------
    def decode(self, examples: pd.DataFrame, scores, *, clean: bool = True) -> pd.DataFrame:
        """id, the prediction (single-label: the class in the label column; multi-label: 0/1 per label column at
        probability 0.5) and PROB + class: the probability of each class."""
        probs = np.exp(scores.values.astype(np.float64))
        frame = pd.DataFrame({"id": scores.ids})
        if self.settings.multi_label:
            for j, label in enumerate(self.classes):
                frame[label] = (probs[:, j] >= 0.5).astype(int)
        else:
            frame[self.label_column] = np.asarray(self.classes, dtype=object)[probs.argmax(1)]
        for j, c in enumerate(self.classes):
            frame[PROB + c] = probs[:, j]
        return frame

    def _probabilities(self, predictions: pd.DataFrame) -> np.ndarray:
        return predictions[[PROB + c for c in self.classes]].to_numpy(dtype=np.float64)

    def score(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> float:
        truth = rows_of(examples, predictions["id"])
        metric = CLASSIFICATION_METRICS[self.metric_name]
        return float(metric.fn(self.targets(truth, "the answers"), self._probabilities(predictions)))

    def cv_report(self, examples: pd.DataFrame, scores, folds: pd.Series) -> str:
        """The metric overall and per fold, and the other metrics that apply, on the out-of-fold predictions."""
        predictions = self.decode(examples, scores)
        others = []
        truth = self.targets(rows_of(examples, predictions["id"]), "the answers")
        for name, metric in CLASSIFICATION_METRICS.items():
            if name == self.metric_name or (self.settings.multi_label and not metric.multi_label_ok):
                continue
            try:
                others.append(f"{name} {metric.fn(truth, self._probabilities(predictions)):.4f}")
            except InputError as err:  # e.g. ROC-AUC of a label with one value only
                others.append(f"{name} n/a ({err})")
        return "\n".join([*self.cv_lines(examples, predictions, folds), "other metrics: " + ", ".join(others)])

    def score_by_group(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """F1 of each class, one against the rest (the argmax class predicted; multi-label: each label at
        probability 0.5); n: the documents of the class. A class neither true nor predicted anywhere has none."""
        true, predicted = self._one_hot(examples, predictions)
        hits = (true & predicted).sum(0)
        return self._per_class("F1", true, 2 * hits / _nonzero(true.sum(0) + predicted.sum(0)))

    def score_by_bucket(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """Recall per true class: the share of each class's documents predicted as it (multi-label: of each
        label's positives found at probability 0.5)."""
        true, predicted = self._one_hot(examples, predictions)
        return self._per_class("recall", true, (true & predicted).sum(0) / _nonzero(true.sum(0)))

    def _one_hot(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n, C) bool each of the truth and the predictions: the class (single-label) or the labels present."""
        truth = self.targets(rows_of(examples, predictions["id"]), "the answers")
        probs = self._probabilities(predictions)
        if self.settings.multi_label:
            return truth > 0, probs >= 0.5
        eye = np.eye(len(self.classes), dtype=bool)
        return eye[truth], eye[probs.argmax(1)]

    def _per_class(self, measure: str, true: np.ndarray, values: np.ndarray) -> GroupScores:
        return GroupScores("label" if self.settings.multi_label else "class", measure, True, pd.DataFrame(
            {"group": list(self.classes), "n": true.sum(0).astype(int), "score": values}))

    def submission_columns(self) -> list[str]:
        s = self.settings
        if s.multi_label or not s.submits_probabilities or len(self.classes) == 2:
            return list(s.label_columns)
        return list(self.classes)

    def submission(self, sample: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """The sample's rows and columns: labels, or probabilities (classify.submit)."""
        s = self.settings
        by_id = predictions.set_index("id").loc[list(sample["id"])]
        out = pd.DataFrame({"id": sample["id"].to_numpy()})
        if not s.submits_probabilities:
            for column in s.label_columns:
                out[column] = by_id[column].to_numpy()
        elif s.multi_label:
            for label in s.label_columns:
                out[label] = by_id[PROB + label].to_numpy()
        elif len(self.classes) == 2:  # one probability column: that of the second class (the positive one)
            out[self.label_column] = by_id[PROB + self.classes[1]].to_numpy()
        else:
            for c in self.classes:
                out[c] = by_id[PROB + c].to_numpy()
        return out

    def read_submission(self, path) -> pd.DataFrame:
        """A submission read back as decode() writes predictions: class probabilities from probability columns,
        or one-hot from predicted labels."""
        frame = read_text_csv(path)
        columns = self.submission_columns()
        require_columns(frame, ["id", *columns], path)
        out = pd.DataFrame({"id": frame["id"]})
        s = self.settings
        if s.multi_label or (s.submits_probabilities and len(self.classes) > 2):
            probs = _parse_probabilities(frame, columns, path)
        elif s.submits_probabilities:
            positive = _parse_probabilities(frame, [self.label_column], path)[:, 0]
            probs = np.stack([1 - positive, positive], axis=1)
        else:
            probs = np.eye(len(self.classes))[self.targets(frame, path)]
        for j, c in enumerate(self.classes):
            out[PROB + c] = probs[:, j]
        return out


def _nonzero(counts: np.ndarray) -> np.ndarray:
    """Counts as float denominators, 0 as nan: a ratio over nothing is undefined, not 0."""
    return np.where(counts > 0, counts, np.nan)


# numpy, not scipy.special: the Kaggle kernel's wheels hold no scipy.
def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log(1 / (1 + e^-x)), stable for large |x|."""
    return -np.logaddexp(0.0, -logits)


def _parse_probabilities(frame: pd.DataFrame, columns: list[str], path) -> np.ndarray:
    values = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        parsed = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=float)
        refuse_bad_cells(frame, ~((parsed >= 0) & (parsed <= 1)), column, "must hold probabilities in [0, 1]", path)
        values[:, j] = parsed
    return values


TASK = ClassifyTask
