"""What the classification and regression tasks share: documents in, one window or several per document, one
pooled output per window, combined into one row of scores per document."""

from __future__ import annotations

import numpy as np
import pandas as pd

from foldnlp.batching import TrainingSet
from foldnlp.inference import WINDOW
from foldnlp.scores import Scores
from foldnlp.tasks.base import Task
from foldnlp.tasks.document import model as document_model
from foldnlp.tasks.document.data import read_documents, read_test_documents
from foldnlp.tasks.document.windows import DocumentWindows, WindowSettings, build_windows, check_settings

UNIT = "example"


class DocumentTask(Task):
    """A task whose examples are documents with one prediction each (classification, regression).

    Subclasses say what the targets are (`targets`, `n_outputs`), how a document's window outputs become its
    scores (`window_scores`), and the loss, decoding, metric and submission."""

    unit = UNIT
    outputs = {"logits": WINDOW}
    head_prefixes = (document_model.HEAD_PREFIX,)
    checkpoint_files = (document_model.HEAD_WEIGHTS, document_model.HEAD_CONFIG)

    @property
    def inference_keys(self) -> tuple[str, ...]:
        return tuple(f"{self.name}.{key}" for key in ("truncation", "tail_tokens", "max_pair_tokens"))

    # ---- data -------------------------------------------------------------------------------------------------
    def read_train(self) -> pd.DataFrame:
        frame = read_documents(self.cfg.data.train_csv, self.settings, with_labels=True)
        self.check_labels(frame, self.cfg.data.train_csv)
        return frame

    def read_test(self, test_path, sample_path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        return read_test_documents(test_path, sample_path, self.settings, self.submission_columns())

    def read_answers(self, path) -> pd.DataFrame:
        """id and the label columns of test ids (the text is not needed to score)."""
        frame = read_documents(path, self.settings, with_labels=True, with_text=False)
        self.check_labels(frame, path)
        return frame

    def check_labels(self, frame: pd.DataFrame, path) -> None:
        """InputError naming the column and rows of label cells this task cannot read."""
        self.targets(frame, path)

    def texts(self, examples: pd.DataFrame) -> list[str]:
        return examples[self.settings.text_column].tolist()

    # ---- windows and model ------------------------------------------------------------------------------------
    def _window_settings(self) -> WindowSettings:
        s = self.settings
        return WindowSettings(self.cfg.features.max_len, self.cfg.features.doc_stride, s.truncation, s.tail_tokens,
                              s.max_pair_tokens)

    def check_windows(self, tokenizer, examples: pd.DataFrame) -> None:
        check_settings(tokenizer, self._window_settings(), pair=self.settings.text_pair_column is not None,
                       section=self.name)

    def windows(self, tokenizer, examples: pd.DataFrame, *, with_targets: bool) -> DocumentWindows:
        pair = self.settings.text_pair_column
        windows = build_windows(tokenizer, self.texts(examples), examples[pair].tolist() if pair else None,
                                self._window_settings())
        if with_targets:
            windows.targets = self.targets(examples, self.cfg.data.train_csv)[windows.example_index]
        return windows

    def training_set(self, windows: DocumentWindows) -> TrainingSet:
        """Every window every epoch, each with its document's target."""
        return TrainingSet(windows.input_ids, {"labels": windows.targets}, keep_chance=np.ones(len(windows)))

    def load_model(self, path: str, model_cfg=None):
        if model_cfg is None:
            return document_model.load_trained(path)
        s = self.settings
        shape = document_model.HeadShape(self.n_outputs, s.pooling, s.head_hidden, s.head_activation, s.head_dropout)
        return document_model.new_model(path, shape, model_cfg)

    # ---- scores -----------------------------------------------------------------------------------------------
    def score_rows(self, examples: pd.DataFrame) -> np.ndarray:
        return np.ones(len(examples), dtype=np.int64)

    def to_scores(self, examples, windows: DocumentWindows, outputs: dict[str, list[np.ndarray]]) -> Scores:
        """One row per document: its windows' outputs combined by window_scores, in the order of examples."""
        logits = np.stack(outputs["logits"]) if len(windows) else np.zeros((0, self.n_outputs), np.float32)
        values = self.window_scores(windows.example_index, logits.astype(np.float64), len(examples))
        return Scores.from_lists(examples["id"].to_numpy(), list(values[:, None, :]), UNIT, self.channels,
                                 self.score_kind)

    def with_truth(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """The predictions with true_<column>: each label column's truth."""
        truth = rows_of(examples, predictions["id"])
        return predictions.assign(**{f"true_{c}": truth[c].to_numpy() for c in self.settings.label_columns})

    def cv_lines(self, examples: pd.DataFrame, predictions: pd.DataFrame, folds: pd.Series) -> list[str]:
        """The metric of out-of-fold predictions overall and per fold, as the CV report's first lines."""
        fold = predictions["id"].map(folds).to_numpy()
        ks = sorted(int(k) for k in set(fold))
        per_fold = "  ".join(f"{k}: {self.score(examples, predictions[fold == k]):.4f} (n={(fold == k).sum()})"
                             for k in ks)
        return [f"CV {self.metric_name} (out-of-fold, {len(predictions)} documents, folds {ks}): "
                f"{self.score(examples, predictions):.4f}", f"per fold: {per_fold}"]

    # ---- for subclasses ---------------------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return len(self.channels)

    def targets(self, examples: pd.DataFrame, path) -> np.ndarray:
        """(n, ...) the training target of each example, as the loss reads it (InputError for unreadable cells)."""
        raise NotImplementedError

    def window_scores(self, example_index: np.ndarray, logits: np.ndarray, n_examples: int) -> np.ndarray:
        """(n_examples, C) each document's scores from its windows' logits (n_windows, n_outputs)."""
        raise NotImplementedError

    def submission_columns(self) -> list[str]:
        """The columns of the sample submission this task fills."""
        raise NotImplementedError


def rows_of(examples: pd.DataFrame, ids) -> pd.DataFrame:
    """The examples with these ids, in that order."""
    return examples.set_index("id").loc[list(ids)].reset_index()


def mean_per_example(example_index: np.ndarray, values: np.ndarray, n_examples: int) -> np.ndarray:
    """(n_examples, C) mean of the rows of values (n_windows, C) that belong to each example; every example must
    have at least one window (build_windows gives one to an empty text too)."""
    sums = np.zeros((n_examples, values.shape[1]))
    np.add.at(sums, example_index, values)
    counts = np.bincount(example_index, minlength=n_examples)
    assert (counts > 0).all(), "an example without windows"
    return sums / counts[:, None]
