"""Span segmentation (Feedback Prize 2021 discourse elements, NER): every word of a document in a class's span or
in none, predicted as BIO tags per word and decoded into spans, scored by the competition's overlap-F1."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification

from foldnlp import modeling
from foldnlp.batching import IGNORE_INDEX, TrainingSet
from foldnlp.errors import InputError
from foldnlp.inference import TOKEN
from foldnlp.scores import Scores
from foldnlp.tables import read_text_csv, read_utf8, require_columns
from foldnlp.tasks.base import DecodingFit, GroupScores, Task
from foldnlp.tasks.spans import data
from foldnlp.tasks.spans.decoding import ClassDecoding, crossfit_f1, decode_documents, fit_rules
from foldnlp.tasks.spans.metrics import overlap_f1
from foldnlp.tasks.spans.windows import WordWindows, build_word_windows, check_settings, word_log_probs

UNIT = "word"


class SpansTask(Task):
    name = "spans"
    metric_name = "overlap_f1"
    unit = UNIT
    outputs = {"logits": TOKEN}
    head_prefixes = ("classifier",)
    decoding_key = "spans.decode"
    inference_keys = ("spans.label_all_subtokens",)

    def __init__(self, cfg):
        super().__init__(cfg)
        classes = self.settings.classes
        self.channels = data.bio_channels(classes) if classes else None

    @property
    def classes(self) -> list[str]:
        """The config's classes (a trained run's config holds them), else the training file's."""
        if self.settings.classes is None:
            self.settings = dataclasses.replace(self.settings, classes=data.classes_of(self.read_train()))
            self.channels = data.bio_channels(self.settings.classes)
        return self.settings.classes

    # ---- data -------------------------------------------------------------------------------------------------
    def _layout(self) -> str:
        return self.settings.layout(self.cfg.data.train_csv)

    def _read_labelled(self, path, texts_dir=None) -> pd.DataFrame:
        if self._layout() == "bio":
            return data.read_bio_file(path, self.settings.sentences_per_document)
        return data.read_feedback_train(path, texts_dir)

    def read_train(self) -> pd.DataFrame:
        """id, text, spans (class, first word, last word) per document."""
        return self._read_labelled(self.cfg.data.train_csv, self.settings.texts_dir)

    def training_files(self) -> list[str]:
        """The training file, and (Feedback Prize) every essay it names."""
        if self._layout() == "bio":
            return [self.cfg.data.train_csv]
        folder = Path(self.settings.texts_dir or Path(self.cfg.data.train_csv).with_name("train"))
        ids = sorted(set(read_text_csv(self.cfg.data.train_csv)["id"]))
        return [self.cfg.data.train_csv, *(str(folder / f"{i}.txt") for i in ids)]

    def read_test(self, test_path, sample_path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Every document of the test folder (Feedback Prize) or BIO file, whatever the sample lists: the hidden
        test replaces the public one. The sample only has to hold the submission's columns."""
        path = Path(test_path)
        if path.is_dir() or (self._layout() == "feedback" and not path.exists()):
            test = data.read_feedback_test(path)  # names a missing or empty folder
        elif self._layout() == "bio":
            test = data.read_bio_file(path, self.settings.sentences_per_document).drop(columns="spans")
        else:
            raise InputError(f"{path}: the test of a Feedback Prize layout is a folder of <id>.txt essays "
                             "(data.test_csv: path/to/test)")
        if sample_path is None:
            return test, None
        # A sample may hold the header alone (a document may have no spans, and a sample need not list any).
        sample = pd.read_csv(io.StringIO(read_utf8(sample_path)), dtype=str, keep_default_na=False)
        require_columns(sample, data.SUBMISSION_COLUMNS, sample_path)
        return test, sample

    def read_answers(self, path) -> pd.DataFrame:
        """The true spans of test documents: a BIO file, or a Feedback Prize train.csv of the test essays (the
        essays read from test/ beside it)."""
        if self._layout() == "bio":
            # Resolved: BIO ids are <file stem>-<k>, so a link to the tagged test file (input/spans_ner_hi/
            # test_answers.txt → test.txt) reads with the test's own ids.
            return self._read_labelled(Path(path).resolve())
        return self._read_labelled(path, Path(path).with_name("test"))

    def read_submission(self, path) -> pd.DataFrame:
        """id, class, predictionstring: one row per span (an id with none has no row)."""
        frame = read_text_csv(path)
        require_columns(frame, data.SUBMISSION_COLUMNS, path)
        spans = data.submission_to_spans(frame, source=str(path))
        return data.spans_to_submission(list(spans), list(spans.values()))

    def fold_table(self, examples: pd.DataFrame) -> pd.DataFrame:
        """The documents with `stratum`: per class, how many spans each holds, as labels for iterative
        stratification (data.span_count_labels: 'Claim:1+', 'Claim:2+', ...), so every fold gets the same share of
        documents with one Claim, with two or more, with four or more, and hence about the same number of spans of
        each class."""
        strata = data.span_count_labels(examples["spans"])
        return examples.assign(stratum=pd.Series(strata, index=examples.index, dtype=object))

    def with_training_data(self, examples: pd.DataFrame, train: pd.DataFrame) -> SpansTask:
        """The classes of every training document (sorted), saved with the weights."""
        classes = data.classes_of(examples)
        if self.settings.classes is not None and set(self.settings.classes) != set(classes):
            raise InputError(f"spans.classes {self.settings.classes} differ from the classes of "
                             f"{self.cfg.data.train_csv} ({classes}): fix the config or leave spans.classes null")
        settings = dataclasses.replace(self.settings, classes=list(self.settings.classes or classes))
        return SpansTask(dataclasses.replace(self.cfg, settings=settings))

    def texts(self, examples: pd.DataFrame) -> list[str]:
        return examples["text"].tolist()

    # ---- windows and model ------------------------------------------------------------------------------------
    def check_windows(self, tokenizer, examples: pd.DataFrame) -> None:
        check_settings(tokenizer, self.cfg.features.max_len, self.cfg.features.doc_stride)

    def windows(self, tokenizer, examples: pd.DataFrame, *, with_targets: bool) -> WordWindows:
        words = [text.split() for text in examples["text"]]
        labels = inside = None
        if with_targets:
            classes = self.classes
            labels = [data.bio_labels(len(w), spans, classes) for w, spans in zip(words, examples["spans"])]
            channels = data.bio_channels(classes)
            inside = np.array([channels.index("I-" + c[2:]) if c.startswith("B-") else j
                               for j, c in enumerate(channels)], dtype=np.int64)
        return build_word_windows(tokenizer, words, self.cfg.features.max_len, self.cfg.features.doc_stride, labels,
                                  label_all_subtokens=self.settings.label_all_subtokens, begin_to_inside=inside)

    def training_set(self, windows: WordWindows) -> TrainingSet:
        """Every window every epoch; per-token BIO targets (IGNORE_INDEX on special tokens, and on later sub-tokens
        unless spans.label_all_subtokens)."""
        return TrainingSet(windows.input_ids, {"labels": windows.labels}, keep_chance=np.ones(len(windows)))

    def load_model(self, path: str, model_cfg=None):
        if model_cfg is None:
            return modeling.load_model(AutoModelForTokenClassification, path)
        channels = data.bio_channels(self.classes)
        return modeling.load_model(AutoModelForTokenClassification, path, model_cfg, num_labels=len(channels),
                                   id2label=dict(enumerate(channels)),
                                   label2id={c: j for j, c in enumerate(channels)})

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """Cross-entropy of the BIO tag of every labelled token."""
        logits = outputs["logits"].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                               ignore_index=IGNORE_INDEX)

    # ---- scores and predictions -------------------------------------------------------------------------------
    def score_rows(self, examples: pd.DataFrame) -> np.ndarray:
        return np.array([len(text.split()) for text in examples["text"]], dtype=np.int64)

    def to_scores(self, examples: pd.DataFrame, windows: WordWindows, outputs: dict[str, list[np.ndarray]]) -> Scores:
        """Per document and word, log-probabilities of the BIO channels: tokenizer-independent, so experiments with
        different tokenizers blend."""
        per_word = word_log_probs(windows, outputs["logits"], self.score_rows(examples),
                                  all_subtokens=self.settings.label_all_subtokens)
        return Scores.from_lists(examples["id"].to_numpy(), per_word, UNIT, data.bio_channels(self.classes))

    def rules(self) -> dict[str, ClassDecoding]:
        d = self.settings.decode
        rules = {c: ClassDecoding(d.min_words, d.min_mean_prob) for c in self.classes}
        for rule in d.class_rules:
            cls, words, prob = rule.rsplit(":", 2)
            rules[cls] = ClassDecoding(int(words), float(prob))
        return rules

    def decode(self, examples: pd.DataFrame, scores: Scores, *, clean: bool = True) -> pd.DataFrame:
        """id, class, predictionstring, score: the spans decoded from the word scores by spans.decode."""
        return decode_documents(scores, self.rules())

    def postprocess_rules(self) -> dict[str, str]:
        """Per class, its minimum length and its minimum mean probability (spans.decode, class_rules first), where
        they drop spans (above 1 word, above 0); each is switched off by class_rules listing every class's rule
        with that one set to keep every span."""
        rules = self.rules()

        def without(cls: str, **no_op) -> str:
            entries = [f"{c}:{r.min_words}:{r.min_mean_prob}"
                       for c, r in {**rules, cls: dataclasses.replace(rules[cls], **no_op)}.items()]
            return f"spans.decode.class_rules={json.dumps(entries, ensure_ascii=False)}"

        switches = {}
        for cls, rule in rules.items():
            if rule.min_words > 1:
                switches[f"{cls} min_words {rule.min_words}"] = without(cls, min_words=1)
            if rule.min_mean_prob > 0:
                switches[f"{cls} min_mean_prob {rule.min_mean_prob}"] = without(cls, min_mean_prob=0.0)
        return switches

    def truth(self, examples: pd.DataFrame, ids=None) -> pd.DataFrame:
        """The true spans of the examples (of `ids` only, if given) as a span table."""
        frame = examples if ids is None else examples.set_index("id").loc[list(ids)].reset_index()
        return data.spans_to_submission(frame["id"].tolist(), frame["spans"].tolist())

    def score(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> float:
        """Macro overlap-F1 over the classes of the truth, on the examples' documents."""
        return overlap_f1(self.truth(examples), predictions[list(data.SUBMISSION_COLUMNS)])[0]

    def with_truth(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """The predicted spans (source "predicted", with their score) and the true ones (source "true")."""
        truth = self.truth(examples).assign(score=np.nan, source="true")
        return pd.concat([predictions.assign(source="predicted"), truth], ignore_index=True)

    def cv_report(self, examples: pd.DataFrame, scores: Scores, folds: pd.Series) -> str:
        """Macro overlap-F1 overall and per fold, and per class."""
        predictions = self.decode(examples, scores)
        macro, per_class = overlap_f1(self.truth(examples, scores.ids), predictions[list(data.SUBMISSION_COLUMNS)])
        fold = pd.Series(list(scores.ids)).map(folds)
        per_fold = []
        for k in sorted(int(v) for v in set(fold)):
            ids = [i for i, f in zip(scores.ids, fold) if f == k]
            truth = self.truth(examples, ids)
            f1 = (f"{overlap_f1(truth, predictions[predictions['id'].isin(ids)])[0]:.4f}" if len(truth)
                  else "n/a (no true spans)")
            per_fold.append(f"{k}: {f1} (n={len(ids)})")
        return "\n".join([
            f"CV overlap_f1 (out-of-fold, {len(scores)} documents, folds {sorted(int(v) for v in set(fold))}): "
            f"{macro:.4f}", "per fold:  " + "  ".join(per_fold),
            "per class: " + "  ".join(f"{c}: {v:.4f}" for c, v in per_class.items())])

    def score_by_group(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """Overlap-F1 per class of the truth (n: its true spans), as the CV report's per-class line."""
        truth = self.truth(examples)
        _, per_class = overlap_f1(truth, predictions[list(data.SUBMISSION_COLUMNS)])
        sizes = truth["class"].value_counts()
        return GroupScores("class", "overlap F1", True, pd.DataFrame(
            {"group": list(per_class), "n": [int(sizes[c]) for c in per_class], "score": list(per_class.values())}))

    def score_by_bucket(self, examples: pd.DataFrame, predictions: pd.DataFrame) -> GroupScores:
        """The buckets are the classes: a document holds spans of several, so its spans are bucketed, not it."""
        return self.score_by_group(examples, predictions)

    def fit_decoding(self, examples: pd.DataFrame, oof_scores: Scores, folds: pd.Series) -> DecodingFit:
        """Per class, the minimum length and mean probability that maximise its F1 on the out-of-fold blend; the
        report gives each class's F1 before and after, and the honest estimate (each fold decoded by rules fit on
        the other folds)."""
        truth = self.truth(examples, oof_scores.ids)
        before_macro, before = overlap_f1(truth, self.decode(examples, oof_scores)[list(data.SUBMISSION_COLUMNS)])
        rules = fit_rules(truth, oof_scores, self.classes)
        entries = [f"{c}:{r.min_words}:{r.min_mean_prob}" for c, r in rules.items()]
        fitted = SpansTask(dataclasses.replace(self.cfg, settings=dataclasses.replace(
            self.settings, decode=dataclasses.replace(self.settings.decode, class_rules=entries))))
        after_macro, after = overlap_f1(truth, fitted.decode(examples, oof_scores)[list(data.SUBMISSION_COLUMNS)])
        honest_macro, honest = crossfit_f1(truth, oof_scores, folds, self.classes)
        lines = [f"  {c}: {before.get(c, 0):.4f} → {after.get(c, 0):.4f} (fit on other folds {honest.get(c, 0):.4f}); "
                 f"min_words {rules[c].min_words}, min_mean_prob {rules[c].min_mean_prob}" for c in self.classes]
        report = "\n".join([f"decoding rules fit on the out-of-fold blend (spans.decode.class_rules): macro "
                            f"{before_macro:.4f} → {after_macro:.4f} fitted on all out-of-fold documents; "
                            f"{honest_macro:.4f} when each fold is decoded by rules fit on the other folds (the "
                            f"honest gain: {honest_macro - before_macro:+.4f})", *lines])
        return DecodingFit(fitted, report, {"spans.decode.class_rules": entries})

    def submission(self, sample: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """The long format: one row per predicted span, every test document's (not only the sample's ids)."""
        return predictions[list(data.SUBMISSION_COLUMNS)].reset_index(drop=True)


TASK = SpansTask
