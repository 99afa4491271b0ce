"""Run every trained fold of an experiment on the test set and write per-fold scores and decoded predictions."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

import foldnlp
from foldnlp import artifacts, processes, test_outputs
from foldnlp.config import ExperimentConfig
from foldnlp.errors import InputError
from foldnlp.inference import predict
from foldnlp.modeling import load_tokenizer
from foldnlp.precision import resolve_precision
from foldnlp.progress import Progress
from foldnlp.runs import load_run_config, open_run
from foldnlp.tasks import get_task
from foldnlp.test_outputs import Record

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
          chunk_chars: int | None = None, progress: bool = True, out_dir: Path | None = None) -> Record:
    """Predict the test set with each fold's best checkpoint of the run in run_dir; returns the settings record of
    the test outputs written.

    overrides: "section.key=value" settings applied to each fold's saved config for inference (a smaller
    features.doc_stride, QA's qa.max_context_words, ...); the rest is what the fold was trained with.
    The outputs go to <run_dir or out_dir>/test/<key>/, the key naming the test file and the settings that change
    the scores (foldnlp.test_outputs), so other settings or another test file never replace earlier outputs; out_dir
    serves a run folder one cannot or would rather not write into.
    The test set goes through in chunks of about chunk_chars text characters whose scores are streamed to disk,
    so memory stays bounded however many long texts there are.
    In a launch of several processes (torchrun, accelerate launch; one GPU each) every process predicts its share of
    each chunk's batches (inference.predict) and process 0 writes them all, in order; every process returns the
    record.
    """
    launch = processes.of_launch()
    device = processes.device()
    run = open_run(run_dir, folds, overrides=overrides)
    test_csv, sample_csv = test_paths(run.cfg, test_csv, sample_csv)
    run_task = get_task(run.cfg)
    test, _ = run_task.read_test(test_csv, sample_csv)
    try:
        precision = resolve_precision(precision or run.cfg.inference.precision, device)
    except ValueError as err:
        raise InputError(f"precision {precision or run.cfg.inference.precision}: {err}") from err
    batch_size = batch_size or run.cfg.inference.batch_size
    chunk_chars = chunk_chars or run.cfg.inference.chunk_chars
    home = run.paths if out_dir is None else test_outputs.out_dir_home(out_dir, run.paths.root, write=launch.is_main)
    settings = test_outputs.new_settings(
        run.paths.root, test_csv, sample_csv, run.cfg, load_run_config(run.paths), precision,
        ["features.max_len", "features.doc_stride", *run_task.inference_keys],
        {"batch_size": batch_size, "chunk_chars": chunk_chars, "device": device.type, "processes": launch.count,
         "foldnlp": foldnlp.__version__})
    key = settings["key"]
    # Every fold's checkpoint and settings (with the overrides) are checked on the whole test set before any model
    # is loaded or any bar drawn: a --doc-stride that cannot work fails at once, not after some folds (or chunks).
    prepared = []
    for fold in run.folds:
        model_dir = run.model_dir(fold)
        fold_cfg = run.fold_config(fold, overrides)
        task = get_task(fold_cfg)
        tokenizer = load_tokenizer(str(model_dir))
        task.check_windows(tokenizer, test)
        prepared.append((fold, model_dir, fold_cfg, task, tokenizer))
    # One chunk (the usual test set) is tokenized once for all folds that share tokenizer and settings.
    windows_cache: dict[str, object] = {}
    for fold, model_dir, fold_cfg, task, tokenizer in prepared:
        chunks = chunk_rows(np.array([len(t) for t in task.texts(test)]), chunk_chars)
        model = task.load_model(str(model_dir)).to(device)
        windows_key = _windows_key(model_dir, fold_cfg)

        predictions, n_windows, seconds = [], 0, 0.0
        bar = Progress(len(test), f"fold {fold}", "example", enabled=progress)
        # Process 0 writes; the others only predict their share (ScoresWriter opens its file at once)
        writer = artifacts.ScoresWriter(home.test_scores(key, fold), test["id"], task.score_rows(test), task.unit,
                                        task.channels, task.score_kind) if launch.is_main else None
        with writer or contextlib.nullcontext():
            for rows in chunks:
                chunk = test.iloc[rows]
                windows = windows_cache.get(windows_key)
                if windows is None:
                    windows = task.windows(tokenizer, chunk, with_targets=False)
                    if len(chunks) == 1:
                        windows_cache[windows_key] = windows
                started = time.perf_counter()
                outputs = predict(model, windows.input_ids, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                                  precision=precision, outputs=task.outputs, desc=f"fold {fold}",
                                  progress=progress and len(chunks) == 1, processes=launch)
                seconds += time.perf_counter() - started
                n_windows += len(windows)
                if writer is not None:
                    scores = task.to_scores(chunk, windows, outputs)
                    writer.write(scores)
                    predictions.append(task.decode(chunk, scores))
                bar.update(len(chunk))
                bar.set_postfix(windows_per_s=f"{n_windows / max(seconds, 1e-9):.1f}")
        bar.close()
        if launch.is_main:
            artifacts.atomic_write_csv(home.test_predictions(key, fold), pd.concat(predictions, ignore_index=True))
            test_outputs.record_fold(home, settings, fold)
        log.info("fold %d: %d windows of %d examples in %.1f s (%.1f windows/s, %s, max_len %d, stride %d%s); wrote "
                 "%s", fold, n_windows, len(test), seconds, n_windows / max(seconds, 1e-9), precision,
                 fold_cfg.features.max_len, fold_cfg.features.doc_stride,
                 "" if launch.count == 1 else f", {launch.count} processes", home.test_scores(key, fold))
    launch.wait()  # the record is complete before any process reads it
    return test_outputs.read_record(home, key)


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
