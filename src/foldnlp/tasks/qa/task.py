"""Extractive QA (Kaggle chaii): question + context → answer span, scored by word-level Jaccard."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering

from foldnlp import modeling
from foldnlp.batching import TrainingSet
from foldnlp.inference import TOKEN
from foldnlp.scores import Scores
from foldnlp.tables import check_ids_match_sample
from foldnlp.tasks.base import GroupScores, Task
from foldnlp.tasks.qa.charscores import CHANNELS, UNIT, window_logits_to_char_scores
from foldnlp.tasks.qa.data import read_answers_csv, read_qa_csv, read_sample_submission, read_squad_json
from foldnlp.tasks.qa.decoding import decode_all, decode_best_span
from foldnlp.tasks.qa.features import (
    QAFeatures,
    WindowSettings,
    build_features,
    check_window_settings,
    truncate_context,
)
from foldnlp.tasks.qa.metrics import jaccard_report, mean_jaccard
from foldnlp.tasks.qa.postprocess import clean_answer

log = logging.getLogger(__name__)

# Context lengths in characters that bound the leaderboard's buckets: fixed, so that every experiment's bars line
# up (SQuAD's paragraphs fall in the first two, chaii's Wikipedia articles spread over all six).
CONTEXT_LENGTH_EDGES = (1_000, 2_000, 5_000, 10_000, 20_000)


class QATask(Task):
    name = "qa"
    metric_name = "jaccard"
    unit, channels = UNIT, CHANNELS
    outputs = {"start_logits": TOKEN, "end_logits": TOKEN}
    head_prefixes = ("qa_outputs",)
    truncation_key = "qa.max_context_words"
    inference_keys = ("qa.max_context_words",)
    decoding_key = "qa.decode"

    # ---- data -------------------------------------------------------------------------------------------------
    def read_train(self) -> pd.DataFrame:
        return read_qa_csv(self.cfg.data.train_csv, with_answers=True)

    def read_test(self, test_path, sample_path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        test = read_qa_csv(test_path, with_answers=False)
        if sample_path is None:
            return test, None
        sample = read_sample_submission(sample_path)
        check_ids_match_sample(test, sample, test_path, sample_path)
        return test, sample

    def read_answers(self, path) -> pd.DataFrame:
        """id, answer_text (extra columns kept): the gold answers of test ids, as in input/test_answers.csv."""
        return read_answers_csv(path)

    def read_submission(self, path) -> pd.DataFrame:
        """id, prediction: a submission's PredictionString per id (an empty one is "")."""
        return read_sample_submission(path).rename(columns={"PredictionString": "prediction"})

    def training_files(self) -> list[str]:
        return [self.cfg.data.train_csv, *(path for _, path in self.settings.external_files())]

    def extra_training_examples(self, valid_ids: set[str]) -> pd.DataFrame | None:
        """External SQuAD-format data; rows sharing an id with a held-out question (translations of the validation
        or test questions, as in XQuAD) are dropped so that nothing of them leaks into training."""
        held_out = set(valid_ids) | self._test_ids()
        frames = []
        for language, path in self.settings.external_files():
            rows = read_squad_json(path, language)
            kept = rows[~rows["id"].isin(held_out)]
            log.info("external %s: %d rows, %d kept (%d share an id with held-out rows)", path, len(rows), len(kept),
                     len(rows) - len(kept))
            frames.append(kept)
        return pd.concat(frames, ignore_index=True) if frames else None

    def _test_ids(self) -> set[str]:
        test_csv = Path(self.cfg.data.test_csv)
        return set(read_qa_csv(test_csv, with_answers=False)["id"]) if test_csv.is_file() else set()

    def texts(self, examples: pd.DataFrame) -> list[str]:
        return examples["context"].tolist()

    # ---- windows and model ------------------------------------------------------------------------------------
    def check_windows(self, tokenizer, examples: pd.DataFrame) -> None:
        check_window_settings(tokenizer, list(examples["question"]), self._window_settings())

    def _window_settings(self) -> WindowSettings:
        return WindowSettings(self.cfg.features.max_len, self.cfg.features.doc_stride,
                              self.settings.max_question_tokens)

    def windows(self, tokenizer, examples: pd.DataFrame, *, with_targets: bool) -> QAFeatures:
        cfg = self._window_settings()
        contexts = [truncate_context(c, self.settings.max_context_words) for c in examples["context"]]
        if not with_targets:
            return build_features(tokenizer, list(examples["question"]), contexts, cfg)
        return build_features(tokenizer, list(examples["question"]), contexts, cfg,
                              answer_starts=examples["answer_start"].to_numpy(),
                              answer_texts=list(examples["answer_text"]))

    def training_set(self, windows: QAFeatures) -> TrainingSet:
        """Every answer window each epoch, and a fresh qa.negative_fraction of the answerless ones."""
        has_answer = windows.has_answer
        return TrainingSet(windows.input_ids,
                           {"start_positions": windows.start_positions, "end_positions": windows.end_positions,
                            "is_negative": ~has_answer},
                           keep_chance=np.where(has_answer, 1.0, self.settings.negative_fraction))

    def load_model(self, path: str, model_cfg=None):
        return modeling.load_model(AutoModelForQuestionAnswering, path, model_cfg)

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """Cross-entropy of start and end positions over each window's tokens; answerless windows (labelled CLS)
        weigh qa.negative_loss_weight."""
        w = self.settings.start_loss_weight
        padding = batch["attention_mask"] == 0
        # Padding must take no probability mass, or the loss would depend on how a batch was padded.
        start = outputs["start_logits"].float().masked_fill(padding, -1e4)
        end = outputs["end_logits"].float().masked_fill(padding, -1e4)
        per_window = (w * F.cross_entropy(start, batch["start_positions"], reduction="none")
                      + (1 - w) * F.cross_entropy(end, batch["end_positions"], reduction="none"))
        weight = torch.where(batch["is_negative"], self.settings.negative_loss_weight, 1.0)
        return (weight * per_window).sum() / weight.sum().clamp_min(1e-8)

    # ---- scores and predictions -------------------------------------------------------------------------------
    def score_rows(self, examples: pd.DataFrame) -> np.ndarray:
        return examples["context"].str.len().to_numpy()

    def to_scores(self, examples: pd.DataFrame, windows: QAFeatures, outputs: dict[str, list[np.ndarray]]) -> Scores:
        """Per-character scores over each FULL context (characters past a truncation hold NO_SCORE), so that runs
        with different truncation settings still ensemble."""
        return window_logits_to_char_scores(examples["id"].to_numpy(), self.score_rows(examples),
                                            windows.example_index, windows.context_offsets,
                                            outputs["start_logits"], outputs["end_logits"])

    def decode(self, examples: pd.DataFrame, scores: Scores, *, clean: bool = True) -> pd.DataFrame:
        """id, prediction: the best answer per example, post-processed unless clean=False."""
        contexts = _contexts_of(examples, scores)
        decode = self.settings.decode
        raw = decode_all(contexts, scores, max_answer_chars=decode.max_answer_chars,
                         max_answer_words=decode.max_answer_words)
        answers = self._cleaned(raw, contexts) if clean else raw
        return pd.DataFrame({"id": scores.ids, "prediction": answers})

    def postprocess_rules(self) -> dict[str, str]:
        """Each cleaning step that qa.decode.postprocess has on (PostprocessSettings), switched off by its key."""
        steps = self.settings.decode.postprocess
        return {f.name: f"qa.decode.postprocess.{f.name}=false" for f in dataclasses.fields(steps)
                if getattr(steps, f.name)}

    def _cleaned(self, answers: list[str], contexts: list[str]) -> list[str]:
        """Post-processed answers (the steps of qa.decode.postprocess); a span of punctuation alone would clean to
        '', which scores 0 for sure, so the raw span is kept then."""
        steps = self.settings.decode.postprocess
        return [clean_answer(answer, context, steps) or answer for answer, context in zip(answers, contexts)]

    def score(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> float:
        """Mean word-level Jaccard (the competition metric)."""
        truths = examples.set_index("id").loc[list(predictions["id"]), "answer_text"]
        return mean_jaccard(list(predictions["prediction"]), list(truths))

    def with_truth(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        truths = examples.set_index("id").loc[list(predictions["id"]), "answer_text"].tolist()
        return predictions.assign(answer_text=truths)

    def cv_report(self, examples: pd.DataFrame, scores: Scores, folds: pd.Series) -> str:
        """CV Jaccard per fold, overall and per language, and without post-processing."""
        frame = examples.set_index("id").loc[list(scores.ids)].reset_index()
        raw = self.decode(frame, scores, clean=False)["prediction"].tolist()
        frame = frame.assign(fold=frame["id"].map(folds).to_numpy(), raw=raw,
                             prediction=self._cleaned(raw, frame["context"].tolist()))
        by_fold = jaccard_report(frame, "fold")
        by_language = jaccard_report(frame, "language")
        without = jaccard_report(frame, prediction_col="raw")["jaccard"].iloc[0]
        return "\n".join([
            f"CV Jaccard (out-of-fold, {len(frame)} questions, folds {sorted(set(frame['fold']))}): "
            f"{by_fold['jaccard'].iloc[0]:.4f}  (without post-processing {without:.4f})",
            "per fold:     " + "  ".join(f"{r.fold}: {r.jaccard:.4f} (n={r.n})" for r in by_fold.iloc[1:].itertuples()),
            "per language: " + "  ".join(f"{r.language}: {r.jaccard:.4f} (n={r.n})"
                                         for r in by_language.iloc[1:].itertuples())])

    def score_by_group(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """Mean Jaccard per language."""
        frame = self.with_truth(examples, predictions).assign(
            language=examples.set_index("id").loc[list(predictions["id"]), "language"].to_numpy())
        return _jaccard_groups(frame, "language", "language")

    def score_by_bucket(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """Mean Jaccard per context length (CONTEXT_LENGTH_EDGES), the empty buckets left out."""
        lengths = examples.set_index("id").loc[list(predictions["id"]), "context"].str.len().to_numpy()
        frame = self.with_truth(examples, predictions).assign(
            bucket=np.searchsorted(CONTEXT_LENGTH_EDGES, lengths, side="right"))
        return _jaccard_groups(frame, "bucket", "context length (characters)", _length_bucket_labels())

    def submission(self, sample: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        answers = dict(zip(predictions["id"], predictions["prediction"]))
        return pd.DataFrame({"id": sample["id"], "PredictionString": sample["id"].map(answers)})

    def side_tables(self, examples: pd.DataFrame, scores: Scores) -> dict[str, pd.DataFrame]:
        """nbest: the qa.decode.n_best best spans of every example (none when n_best is 1)."""
        if self.settings.decode.n_best <= 1:
            return {}
        return {"nbest": self.n_best_table(examples, scores)}

    def n_best_table(self, examples: pd.DataFrame, scores: Scores) -> pd.DataFrame:
        """id, rank (1 = the answer submitted), answer (post-processed), score (log-probability of start plus
        end), char_start, char_end."""
        decode = self.settings.decode
        rows = []
        for i, context in enumerate(_contexts_of(examples, scores)):
            start, end = scores.example(i).T
            spans = decode_best_span(context, start, end, max_answer_chars=decode.max_answer_chars,
                                     max_answer_words=decode.max_answer_words, n_best=decode.n_best)
            answers = self._cleaned([context[s:e] for s, e, _ in spans], [context] * len(spans))
            rows += [(scores.ids[i], rank, answer, round(float(v), 4), s, e)
                     for rank, (answer, (s, e, v)) in enumerate(zip(answers, spans), start=1)]
        return pd.DataFrame(rows, columns=["id", "rank", "answer", "score", "char_start", "char_end"])


def _jaccard_groups(frame: pd.DataFrame, column: str, by: str, labels: list[str] | None = None) -> GroupScores:
    """Mean Jaccard of frame (prediction, answer_text) per value of column; labels: the text of each value."""
    rows = jaccard_report(frame, column).iloc[1:]  # the first row is all of them
    group = rows[column].map(lambda value: labels[value] if labels else str(value))
    return GroupScores(by, "jaccard", True, pd.DataFrame({"group": group.to_numpy(), "n": rows["n"].to_numpy(),
                                                          "score": rows["jaccard"].to_numpy()}))


def _length_bucket_labels() -> list[str]:
    """'<1k', '1k-2k', ..., '≥20k': the text of each CONTEXT_LENGTH_EDGES bucket."""
    def short(chars: int) -> str:
        return f"{chars // 1000}k"

    edges = CONTEXT_LENGTH_EDGES
    return [f"<{short(edges[0])}", *(f"{short(a)}-{short(b)}" for a, b in zip(edges, edges[1:])),
            f"≥{short(edges[-1])}"]


def _contexts_of(examples: pd.DataFrame, scores: Scores) -> list[str]:
    """The contexts of scores' examples, in scores.ids order, looked up by id."""
    return examples.set_index("id").loc[list(scores.ids), "context"].tolist()


TASK = QATask
