"""Run every trained fold of an experiment on the test set and write per-fold scores and decoded predictions."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldnlp import artifacts
from foldnlp.config import ExperimentConfig
from foldnlp.inference import predict
from foldnlp.modeling import load_tokenizer
from foldnlp.precision import resolve_precision
from foldnlp.progress import Progress
from foldnlp.runs import open_run
from foldnlp.tasks import get_task

log = logging.getLogger(__name__)


def sample_submission_path(test_csv: str | Path, configured: str | None) -> Path:
    """The configured sample submission, else sample_submission.csv beside the test CSV."""
    return Path(configured) if configured else Path(test_csv).with_name("sample_submission.csv")


def test_paths(cfg: ExperimentConfig, test_csv: str | Path | None,
               sample_csv: str | Path | None) -> tuple[str | Path, Path]:
    """(test file, sample submission): the ones given, else the config's."""
    test_csv = test_csv or cfg.data.test_csv
    return test_csv, Path(sample_csv or sample_submission_path(test_csv, cfg.data.sample_submission_csv))


def infer(run_dir: Path, *, folds: list[int] | None, test_csv: str | Path | None, sample_csv: str | Path | None,
          overrides: list[str] = (), batch_size: int | None = None, precision: str | None = None,
          chunk_chars: int | None = None, progress: bool = True) -> list[int]:
    """Predict the test set with each fold's best checkpoint of the run in run_dir; returns the folds done.

    overrides: "section.key=value" settings applied to each fold's saved config for inference (a smaller
    features.doc_stride, QA's qa.max_context_words, ...); the rest is what the fold was trained with.
    The test set goes through in chunks of about chunk_chars text characters whose scores are streamed to disk,
    so memory stays bounded however many long texts there are.
    """
    run = open_run(run_dir, folds)
    test_csv, sample_csv = test_paths(run.cfg, test_csv, sample_csv)
    test, _ = get_task(run.cfg).read_test(test_csv, sample_csv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(precision or run.cfg.inference.precision, device)
    batch_size = batch_size or run.cfg.inference.batch_size
    chunk_chars = chunk_chars or run.cfg.inference.chunk_chars
    # Every fold's checkpoint and settings (with the overrides) are checked on the whole test set before any model
    # is loaded or any bar drawn: a --doc-stride that cannot work fails at once, not after some folds (or chunks).
    folds = []
    for fold in run.folds:
        model_dir = run.model_dir(fold)
        fold_cfg = run.fold_config(fold, overrides)
        task = get_task(fold_cfg)
        tokenizer = load_tokenizer(str(model_dir))
        task.check_windows(tokenizer, test)
        folds.append((fold, model_dir, fold_cfg, task, tokenizer))
    # One chunk (the usual test set) is tokenized once for all folds that share tokenizer and settings.
    windows_cache: dict[str, object] = {}
    for fold, model_dir, fold_cfg, task, tokenizer in folds:
        chunks = chunk_rows(np.array([len(t) for t in task.texts(test)]), chunk_chars)
        model = task.load_model(str(model_dir)).to(device)
        key = _windows_key(model_dir, fold_cfg)

        predictions, n_windows, seconds = [], 0, 0.0
        bar = Progress(len(test), f"fold {fold}", "example", enabled=progress)
        with artifacts.ScoresWriter(run.paths.test_scores(fold), test["id"], task.score_rows(test), task.unit,
                                    task.channels) as writer:
            for rows in chunks:
                chunk = test.iloc[rows]
                windows = windows_cache.get(key)
                if windows is None:
                    windows = task.windows(tokenizer, chunk, with_targets=False)
                    if len(chunks) == 1:
                        windows_cache[key] = windows
                started = time.perf_counter()
                outputs = predict(model, windows.input_ids, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                                  precision=precision, outputs=task.outputs, desc=f"fold {fold}",
                                  progress=progress and len(chunks) == 1)
                seconds += time.perf_counter() - started
                n_windows += len(windows)
                scores = task.to_scores(chunk, windows, outputs)
                writer.write(scores)
                predictions.append(task.decode(chunk, scores))
                bar.update(len(chunk))
                bar.set_postfix(windows_per_s=f"{n_windows / max(seconds, 1e-9):.1f}")
        bar.close()
        artifacts.atomic_write_csv(run.paths.test_predictions(fold), pd.concat(predictions, ignore_index=True))
        log.info("fold %d: %d windows of %d examples in %.1f s (%.1f windows/s, %s, max_len %d, stride %d); wrote %s",
                 fold, n_windows, len(test), seconds, n_windows / max(seconds, 1e-9), precision,
                 fold_cfg.features.max_len, fold_cfg.features.doc_stride, run.paths.test_scores(fold))
    return run.folds


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


def _windows_key(model_dir: Path, cfg: ExperimentConfig) -> str:
    """Folds with byte-identical tokenizers and the same window settings share one tokenization of the test set."""
    tokenizer_bytes = (model_dir / "tokenizer.json").read_bytes() if (model_dir / "tokenizer.json").is_file() else b""
    settings = repr((cfg.task, cfg.features, cfg.settings)).encode()
    return hashlib.sha1(tokenizer_bytes + settings).hexdigest()
