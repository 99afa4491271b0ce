"""Run every trained fold of an experiment on the test set and write per-fold character scores and answers."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from foldnlp import artifacts
from foldnlp.config import ExperimentConfig, FeaturesConfig, load_config
from foldnlp.data import check_ids_match_sample, read_qa_csv, read_sample_submission
from foldnlp.errors import InputError
from foldnlp.inference import predict
from foldnlp.modeling import load_model, load_tokenizer
from foldnlp.precision import resolve_precision
from foldnlp.tasks.qa import task
from foldnlp.tasks.qa.features import QAFeatures

log = logging.getLogger(__name__)


def sample_submission_path(test_csv: str | Path, configured: str | None) -> Path:
    """The configured sample submission, else sample_submission.csv beside the test CSV."""
    return Path(configured) if configured else Path(test_csv).with_name("sample_submission.csv")


def read_test(test_csv: str | Path, sample_csv: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test rows, sample submission), their ids checked to match."""
    test, sample = read_qa_csv(test_csv, with_answers=False), read_sample_submission(sample_csv)
    check_ids_match_sample(test, sample, test_csv, sample_csv)
    return test, sample


def infer(run_dir: Path, *, folds: list[int] | None, test_csv: str | None, sample_csv: str | None,
          feature_overrides: dict, batch_size: int | None, precision: str | None, chunk_chars: int | None = None,
          progress: bool = True) -> list[int]:
    """Predict the test set with each fold's best checkpoint of the run in run_dir; returns the folds done.

    feature_overrides: FeaturesConfig fields (max_len, doc_stride, max_context_words) replacing training values.
    The test set goes through in chunks of about chunk_chars context characters whose scores are streamed to disk,
    so memory stays bounded however many long contexts there are.
    """
    paths = artifacts.RunPaths(Path(run_dir))
    run_cfg = load_run_config(paths)
    folds = paths.folds_to_use(folds)
    test_csv = test_csv or run_cfg.data.test_csv
    test, _ = read_test(test_csv, sample_csv or sample_submission_path(test_csv, run_cfg.data.sample_submission_csv))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(precision or run_cfg.inference.precision, device)
    batch_size = batch_size or run_cfg.inference.batch_size
    chunks = chunk_rows(test["context"].str.len().to_numpy(), chunk_chars or run_cfg.inference.chunk_chars)
    # One chunk (the usual test set) is tokenized once for all folds that share tokenizer and settings.
    features_cache: dict[str, QAFeatures] = {}
    for fold in folds:
        model_dir = artifacts.checked_model_dir(paths.model_dir(fold))
        fold_cfg = load_config(model_dir / artifacts.CONFIG_BESIDE_WEIGHTS)
        features_cfg = dataclasses.replace(fold_cfg.features, **feature_overrides)
        tokenizer = load_tokenizer(str(model_dir))
        model = load_model(fold_cfg.task, str(model_dir)).to(device)
        key = _features_key(model_dir, features_cfg)

        answers, n_windows, seconds = [], 0, 0.0
        bar = tqdm(total=len(test), desc=f"fold {fold}", unit="ctx", disable=not progress)
        with artifacts.CharScoresWriter(paths.test_scores(fold), test["id"], test["context"].str.len()) as writer:
            for rows in chunks:
                chunk = test.iloc[rows]
                features = features_cache.get(key)
                if features is None:
                    features = task.make_features(tokenizer, chunk, features_cfg, with_labels=False)
                    if len(chunks) == 1:
                        features_cache[key] = features
                started = time.perf_counter()
                outputs = predict(model, features.input_ids, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                                  precision=precision, output_names=task.OUTPUT_NAMES, desc=f"fold {fold}",
                                  progress=progress and len(chunks) == 1)
                seconds += time.perf_counter() - started
                n_windows += len(features)
                scores = task.char_scores(chunk, features, outputs)
                writer.write(scores)
                answers.extend(task.decode(chunk, scores, fold_cfg.decode))
                bar.update(len(chunk))
                bar.set_postfix(windows_per_s=f"{n_windows / max(seconds, 1e-9):.1f}")
        bar.close()
        artifacts.atomic_write_csv(paths.test_predictions(fold),
                                   pd.DataFrame({"id": test["id"], "prediction": answers}))
        log.info("fold %d: %d windows of %d examples in %.1f s (%.1f windows/s, %s, max_len %d, stride %d); wrote %s",
                 fold, n_windows, len(test), seconds, n_windows / max(seconds, 1e-9), precision, features_cfg.max_len,
                 features_cfg.doc_stride, paths.test_scores(fold))
    return folds


def chunk_rows(lengths: np.ndarray, max_chars: int) -> list[np.ndarray]:
    """Consecutive row ranges holding at most max_chars characters each (a longer single row gets its own)."""
    chunks, start, total = [], 0, 0
    for row, length in enumerate(lengths):
        if row > start and total + length > max_chars:
            chunks.append(np.arange(start, row))
            start, total = row, 0
        total += int(length)
    chunks.append(np.arange(start, len(lengths)))
    return chunks


def load_run_config(paths: artifacts.RunPaths) -> ExperimentConfig:
    if not paths.config.is_file():
        raise InputError(f"{paths.root} is not a trained run (no {paths.config.name}): run train_fold.py first")
    return load_config(paths.config)


def _features_key(model_dir: Path, cfg: FeaturesConfig) -> str:
    """Folds with byte-identical tokenizers and the same settings share one tokenization of the test set."""
    tokenizer_bytes = (model_dir / "tokenizer.json").read_bytes() if (model_dir / "tokenizer.json").is_file() else b""
    return hashlib.sha1(tokenizer_bytes + repr(cfg).encode()).hexdigest()
