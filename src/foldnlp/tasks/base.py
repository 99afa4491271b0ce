"""The task seam: what one kind of competition supplies to the generic pipeline.

The pipeline knows three things only: an *example table* (a DataFrame with an `id` column, one row per example),
*windows* (token ids of each window and the example it belongs to, turned into a batching.TrainingSet for
training), and *scores* (scores.Scores: per example, rows of a unit × channels of log-probabilities). A task turns
its competition's files into the first, its examples into the second, model outputs into the third, and scores
into predictions, a metric and a submission:

    read_train / read_test ─▶ examples ─▶ windows ─▶ model (the task's head) ─▶ outputs ─▶ to_scores ─▶ Scores
    Scores (blended over folds and experiments) ─▶ decode ─▶ predictions ─▶ score / cv_report / submission
    read_submission (a submission file) ─▶ predictions ─▶ score against read_answers (a file of test truths)

| | QA | span segmentation | classification / regression |
| --- | --- | --- | --- |
| examples | question + context | essay (words) | document |
| targets | one per window (start, end) | one per token (BIO) | one per window (label) |
| scores unit × channels | char × (start, end) | word × BIO classes | example × classes (regression: targets) |
| predictions per id | one answer | zero or more spans | one label (or one value per target) |
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from foldnlp.batching import TrainingSet
from foldnlp.scores import LOGPROB, Scores


class Windows(Protocol):
    """What the pipeline reads of a task's windows (the task keeps whatever else it needs, e.g. offsets)."""

    input_ids: list[np.ndarray]  # one (n_tokens,) int64 array per window, unpadded
    example_index: np.ndarray  # (n_windows,) position of each window's example in the example table

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class DecodingFit:
    """Decoding settings fit on out-of-fold scores (Task.fit_decoding)."""

    task: Task  # the task that decodes with them (the test blend is decoded by it)
    report: str  # printable: the CV before and after fitting, and an honest estimate (fit on the other folds)
    settings: dict  # what was fit, as written beside the submission (<out>.decoding.json)


@dataclass(frozen=True)
class GroupScores:
    """A measure of out-of-fold predictions per group of examples (or of spans), for the leaderboard and its plots
    (python -m foldnlp.report): Task.score_by_group and Task.score_by_bucket."""

    by: str  # what the groups are, as an axis label: "language", "class", "context length (characters)"
    measure: str  # what a score is: the metric ("jaccard") or a per-group one ("F1", "recall", "RMSE")
    higher_is_better: bool
    # Columns group (str), n (examples, or true spans, in the group), score; rows in display order.
    table: pd.DataFrame


class Task(abc.ABC):
    """One kind of competition, bound to an experiment config (`cfg.settings` is the task's own section)."""

    name: str  # the value of cfg.task
    metric_name: str  # the competition metric, as printed and recorded in metrics.json
    higher_is_better: bool = True
    unit: str  # what a row of the scores is: "char", "word", "example"
    channels: tuple[str, ...]  # the scores' channels
    score_kind: str = LOGPROB  # scores.LOGPROB, or scores.VALUE for predictions (regression)
    outputs: dict[str, str]  # model output name -> inference.TOKEN or inference.WINDOW
    head_prefixes: tuple[str, ...]  # parameter-name prefixes of the fresh head (trained at train.head_lr)
    # Files a checkpoint folder holds besides the Hugging Face model and tokenizer files (a head saved on its
    # own); the Kaggle bundle ships them with the weights.
    checkpoint_files: tuple[str, ...] = ()
    truncation_key: str | None = None  # the config key that keeps only the first N words of a text, if any
    # Task settings that change how the test set is windowed; shown, with features.max_len and doc_stride, in the
    # settings record of test outputs (infer.py --set may change them).
    inference_keys: tuple[str, ...] = ()
    # The part of the task's section that decoding reads (what ensemble.py --set may change besides data paths);
    # None: the whole section.
    decoding_key: str | None = None

    def __init__(self, cfg):
        self.cfg = cfg
        self.settings = cfg.settings

    # ---- data -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def read_train(self) -> pd.DataFrame:
        """The training examples with their truth, validated (InputError naming file, column and rows)."""

    @abc.abstractmethod
    def read_test(self, test_path, sample_path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """(test examples, sample submission), checked to cover the same ids; sample_path None reads no sample
        (counting windows needs none)."""

    @abc.abstractmethod
    def read_answers(self, path) -> pd.DataFrame:
        """A file of the truth for test ids (the competition's solution file; the bundled input/test_answers.csv) as
        examples that score() takes, validated (InputError naming file, column and rows)."""

    @abc.abstractmethod
    def read_submission(self, path) -> pd.DataFrame:
        """A submission file in the competition's format read back as predictions (`id` plus the task's prediction
        columns, as decode() returns them), validated."""

    def training_files(self) -> list[str]:
        """Every file training reads, hashed into the provenance record; the training CSV first."""
        return [self.cfg.data.train_csv]

    def fold_table(self, examples: pd.DataFrame) -> pd.DataFrame:
        """The rows folds are assigned to: `id` plus the columns folds.stratify_by / folds.group_by may name."""
        return examples

    def with_training_data(self, examples: pd.DataFrame, train: pd.DataFrame) -> Task:
        """This task with the settings a fold learns from its data filled in (classification: the classes, from
        all of `examples`; regression: target scaling and range, from the fold's training rows `train` only, so
        nothing of the held-out fold leaks). train_fold saves the config of the task returned beside the weights,
        so inference (even in a Kaggle kernel, without the training file) decodes as the fold was trained. The
        default learns nothing."""
        return self

    def extra_training_examples(self, valid_ids: set[str]) -> pd.DataFrame | None:
        """Examples added to every fold's training part (external data), none sharing an id with a held-out one."""
        return None

    @abc.abstractmethod
    def texts(self, examples: pd.DataFrame) -> list[str]:
        """The long text of each example that windows cover; its length in characters sizes inference chunks."""

    # ---- windows and model ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def windows(self, tokenizer, examples: pd.DataFrame, *, with_targets: bool) -> Windows:
        """Tokenize examples into windows (features.max_len, features.doc_stride); with targets for training."""

    def check_windows(self, tokenizer, examples: pd.DataFrame) -> None:
        """Refuse (InputError) window settings that cannot cut these examples (QA: a doc stride the longest question
        leaves no room for). train_fold and infer call it before any model is loaded or anything is deleted or
        drawn, so that a bad setting fails at once, in one line. The default checks nothing beyond the config."""
        return None

    @abc.abstractmethod
    def training_set(self, windows: Windows) -> TrainingSet:
        """The windows with their targets and per-window sampling chance."""

    @abc.abstractmethod
    def load_model(self, path: str, model_cfg=None):
        """The backbone at `path` with this task's head; model_cfg (training) applies dropout and freezing."""

    @abc.abstractmethod
    def loss(self, outputs, batch: dict):
        """Scalar training loss of a batch from the model's outputs (logits) and the batch's targets."""

    # ---- scores and predictions -------------------------------------------------------------------------------
    @abc.abstractmethod
    def score_rows(self, examples: pd.DataFrame) -> np.ndarray:
        """(n,) rows of the unit each example's scores have (QA: characters of the context)."""

    @abc.abstractmethod
    def to_scores(self, examples: pd.DataFrame, windows: Windows, outputs: dict[str, list[np.ndarray]]) -> Scores:
        """Per-window model outputs → per-example, tokenizer-independent Scores, in the order of examples."""

    @abc.abstractmethod
    def decode(self, examples: pd.DataFrame, scores: Scores, *, clean: bool = True) -> pd.DataFrame:
        """Predictions: `id` plus the task's prediction columns, zero or more rows per id, in scores.ids order.
        clean=False skips post-processing (the CV report shows what it is worth)."""

    def postprocess_rules(self) -> dict[str, str]:
        """The post-processing rules decode applies with these settings, each named and mapped to the config
        override ("section.key=value") that switches it off; ensemble.py prints the out-of-fold CV without each one.
        Only rules that are on and can change a prediction are listed; {} (the default): none, nothing printed."""
        return {}

    def fit_decoding(self, examples: pd.DataFrame, oof_scores: Scores, folds: pd.Series) -> DecodingFit | None:
        """Decoding settings (thresholds, minimum lengths) fit on out-of-fold scores (folds: fold per id, for an
        honest estimate fit on the other folds); the test blend is decoded by the fit's task. None: nothing to
        fit (the default)."""
        return None

    @abc.abstractmethod
    def score(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> float:
        """The competition metric of predictions against the examples' truth."""

    def metric(self, examples: pd.DataFrame, scores: Scores) -> float:
        """The competition metric of scores decoded, against the truth of their examples only (examples may hold
        more, e.g. every training row for one fold's scores)."""
        own = examples[examples["id"].isin(set(scores.ids.tolist()))]
        return self.score(own, self.decode(own, scores))

    @abc.abstractmethod
    def with_truth(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """Predictions with the truth beside them, as written to fold<k>/oof.csv."""

    @abc.abstractmethod
    def cv_report(self, examples: pd.DataFrame, scores: Scores, folds: pd.Series) -> str:
        """Printable CV of out-of-fold scores: overall and per fold (folds: fold per id), and what else helps."""

    def score_by_group(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores | None:
        """The leaderboard's per-group columns: a measure per group of the examples (QA: Jaccard per language;
        classify and spans: F1 per class; regress: RMSE per target). examples and predictions as score() takes
        them: the examples scored, their predictions. None: no groups (the default)."""
        return None

    def score_by_bucket(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores | None:
        """The leaderboard's bucket plot: a measure per bucket the task chooses (QA: context length; spans: class;
        classify: true class; regress: quantile of the target), with labels that do not depend on which examples
        are scored, so that the bars of experiments line up. Arguments as score_by_group. None: no buckets."""
        return None

    @abc.abstractmethod
    def submission(self, sample: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """The submission in the competition's format, in the sample's order."""

    def side_tables(self, examples: pd.DataFrame, scores: Scores) -> dict[str, pd.DataFrame]:
        """Extra tables written beside the submission as <out>.<name>.csv (QA: the n-best answers)."""
        return {}
