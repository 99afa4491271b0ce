"""The QA task seam: examples → features → training windows, its loss, outputs → character scores → answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from foldnlp.config import DecodeConfig, FeaturesConfig, TrainConfig
from foldnlp.metrics import mean_jaccard
from foldnlp.postprocess import clean_answer
from foldnlp.tasks.qa.charscores import CharScores, window_logits_to_char_scores
from foldnlp.tasks.qa.decoding import decode_all, decode_best_span
from foldnlp.tasks.qa.features import QAFeatures, build_features, truncate_context
from foldnlp.training import TrainingSet

METRIC = "jaccard"
HEAD_PREFIXES = ("qa_outputs",)  # parameter names of the fresh QA head (trained at train.head_lr)
OUTPUT_NAMES = ("start_logits", "end_logits")


def make_features(tokenizer, frame: pd.DataFrame, cfg: FeaturesConfig, with_labels: bool) -> QAFeatures:
    contexts = [truncate_context(c, cfg.max_context_words) for c in frame["context"]]
    if not with_labels:
        return build_features(tokenizer, list(frame["question"]), contexts, cfg)
    return build_features(tokenizer, list(frame["question"]), contexts, cfg,
                          answer_starts=frame["answer_start"].to_numpy(), answer_texts=list(frame["answer_text"]))


def training_set(features: QAFeatures) -> TrainingSet:
    return TrainingSet(features.input_ids,
                       {"start_positions": features.start_positions, "end_positions": features.end_positions},
                       is_negative=~features.has_answer)


def make_loss(cfg: TrainConfig):
    """Cross-entropy of start and end positions over each window's tokens; answerless windows (labelled CLS)
    weigh train.negative_loss_weight."""

    def loss_fn(outputs, batch: dict) -> torch.Tensor:
        padding = batch["attention_mask"] == 0
        # Padding must take no probability mass, or the loss would depend on how a batch was padded.
        start = outputs["start_logits"].float().masked_fill(padding, -1e4)
        end = outputs["end_logits"].float().masked_fill(padding, -1e4)
        per_window = (cfg.start_loss_weight * F.cross_entropy(start, batch["start_positions"], reduction="none")
                      + (1 - cfg.start_loss_weight) * F.cross_entropy(end, batch["end_positions"], reduction="none"))
        weight = torch.where(batch["is_negative"], cfg.negative_loss_weight, 1.0)
        return (weight * per_window).sum() / weight.sum().clamp_min(1e-8)

    return loss_fn


def char_scores(frame: pd.DataFrame, features: QAFeatures, outputs: dict[str, list[np.ndarray]]) -> CharScores:
    """Per-character scores over each FULL context (characters past a truncation hold NO_SCORE), so that runs with
    different truncation settings still ensemble."""
    lengths = frame["context"].str.len().to_numpy()
    return window_logits_to_char_scores(frame["id"].to_numpy(), lengths, features.example_index,
                                        features.context_offsets, outputs["start_logits"], outputs["end_logits"])


def contexts_of(frame: pd.DataFrame, scores: CharScores) -> list[str]:
    """The contexts of scores' examples, in scores.ids order, looked up by id in frame."""
    return frame.set_index("id").loc[list(scores.ids), "context"].tolist()


def decode(frame: pd.DataFrame, scores: CharScores, cfg: DecodeConfig, *, clean: bool = True) -> list[str]:
    """Best answer per example (in scores.ids order), post-processed unless clean=False.
    `frame` supplies the contexts by id."""
    contexts = contexts_of(frame, scores)
    raw = decode_all(contexts, scores, max_answer_chars=cfg.max_answer_chars, max_answer_words=cfg.max_answer_words)
    return clean_answers(raw, contexts) if clean else raw


def clean_answers(answers: list[str], contexts: list[str]) -> list[str]:
    """Post-processed answers; a span of punctuation alone would clean to '', which scores 0 for sure, so the raw
    span is kept then."""
    return [clean_answer(answer, context) or answer for answer, context in zip(answers, contexts)]


def n_best_table(frame: pd.DataFrame, scores: CharScores, cfg: DecodeConfig) -> pd.DataFrame:
    """The cfg.n_best best spans of every example: id, rank (1 = the answer submitted), answer (post-processed),
    score (log-probability of start plus end), char_start, char_end."""
    contexts = contexts_of(frame, scores)
    rows = []
    for i, context in enumerate(contexts):
        spans = decode_best_span(context, *scores.example(i), max_answer_chars=cfg.max_answer_chars,
                                 max_answer_words=cfg.max_answer_words, n_best=cfg.n_best)
        answers = clean_answers([context[s:e] for s, e, _ in spans], [context] * len(spans))
        rows += [(scores.ids[i], rank, answer, round(float(v), 4), s, e)
                 for rank, (answer, (s, e, v)) in enumerate(zip(answers, spans), start=1)]
    return pd.DataFrame(rows, columns=["id", "rank", "answer", "score", "char_start", "char_end"])


def score(predictions, truths) -> float:
    """Mean word-level Jaccard (the competition metric)."""
    return mean_jaccard(list(predictions), list(truths))
