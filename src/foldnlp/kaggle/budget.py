"""Inference budget of a kernel: windows per experiment × folds ÷ throughput, against the competition's time limit.

Windows are counted exactly, by tokenizing the test CSV with each experiment's tokenizer and feature settings.
Throughput is measured for `--device cpu` (fold 0 of each experiment on a sample of its windows, on this machine);
for a GPU it is an assumption: the windows' floating-point work (from the model's shape and each window's length)
divided by an assumed sustained fp16 rate per device (DEVICES). When the estimate is over the limit, the windows are
recounted for smaller doc strides and context truncations, and the least cut that fits is suggested.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldnlp import artifacts
from foldnlp.config import FeaturesConfig, load_config
from foldnlp.data import read_qa_csv
from foldnlp.errors import InputError
from foldnlp.inference import predict
from foldnlp.modeling import load_model, load_tokenizer
from foldnlp.precision import resolve_precision
from foldnlp.steps.infer import load_run_config
from foldnlp.tasks.qa import task


@dataclass(frozen=True)
class Device:
    peak_tflops: float  # fp16 peak from the vendor's datasheet (tensor cores where the GPU has them)
    sustained_tflops: float  # ASSUMED rate of PyTorch fp16 inference of BERT-like encoders with dynamic padding


# Not measured here (this machine has no GPU): peaks from NVIDIA's datasheets (T4: 65 fp16 tensor TFLOPS; P100 PCIe
# 16 GB, Kaggle's P100: 18.7 fp16, no tensor cores; A100: 312 fp16 dense tensor), sustained rates assumed at about
# 20 % of peak on T4 and 30 % on P100 and A100, the usual range for eager-mode encoder inference without kernel
# fusion. Small models (e5-small) are more launch-bound than this assumes, so treat GPU figures as optimistic.
DEVICES = {"t4": Device(65.0, 13.0), "p100": Device(18.7, 5.6), "a100": Device(312.0, 94.0)}
SAMPLE_WINDOWS = 128  # windows timed per experiment for --device cpu (after one untimed warm-up batch)
TIMED_PASSES = 2  # the fastest pass counts: other processes on the machine only ever slow a pass down
CANDIDATE_STRIDES = (64, 32, 0)  # doc strides tried when over the limit (smaller = fewer windows)
CANDIDATE_WORD_QUANTILES = (0.9, 0.75, 0.5)  # context truncations tried: quantiles of the contexts' word counts


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int

    def flops(self, lengths: np.ndarray) -> float:
        """Forward floating-point operations of windows of these token lengths: 2 per multiply-add of the dense
        layers (4·H² attention projections, 2·H·I feed-forward per token and layer) plus the attention scores and
        mixing (4·T²·H per layer); embeddings and the QA head are negligible."""
        t = lengths.astype(np.float64)
        dense = 2.0 * t * self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.intermediate)
        attention = 4.0 * self.layers * t ** 2 * self.hidden
        return float((dense + attention).sum())


@dataclass(frozen=True)
class Estimate:
    name: str
    folds: int
    features: FeaturesConfig
    windows: int  # in the test CSV as given
    mean_tokens: float
    windows_per_second: float  # per fold
    scale: float  # expected rows / rows in the CSV
    note: str  # how windows_per_second was obtained

    @property
    def seconds(self) -> float:
        return self.windows * self.scale * self.folds / self.windows_per_second


@dataclass
class _Experiment:
    name: str
    folds: list[int]
    model_dir: Path
    features: FeaturesConfig
    tokenizer: object
    shape: Shape
    precision: str
    batch_size: int


def plan(experiments: list[Path], test_csv: Path, *, device: str, limit_hours: float, expected_rows: int | None,
         overhead_minutes: float, feature_overrides: dict) -> str:
    """The printed budget: method and assumptions, per-experiment estimate, total against the limit, and the doc
    stride / context truncation that would fit when over."""
    if device != "cpu" and device not in DEVICES:
        raise InputError(f"--device {device!r}: one of cpu, {', '.join(DEVICES)}")
    test = read_qa_csv(test_csv, with_answers=False)
    scale = (expected_rows or len(test)) / len(test)
    opened = [_open(Path(e), feature_overrides) for e in experiments]
    estimates = []
    for exp in opened:
        features = task.make_features(exp.tokenizer, test, exp.features, with_labels=False)
        windows_per_second, note = _throughput(exp, features, device)
        estimates.append(Estimate(exp.name, len(exp.folds), exp.features, len(features), float(features.lengths.mean()),
                                  windows_per_second, scale, note))
    lines = _method(device, test_csv, len(test), expected_rows, overhead_minutes, estimates)
    lines += _table(estimates)
    budget = limit_hours * 3600 - overhead_minutes * 60
    total = sum(e.seconds for e in estimates)
    verdict = "fits" if total <= budget else f"OVER by {_duration(total - budget)}"
    lines.append(f"total: {_duration(total)} of inference + {overhead_minutes:g} min overhead = "
                 f"{_duration(total + overhead_minutes * 60)} of the {limit_hours:g} h limit "
                 f"({100 * (total + overhead_minutes * 60) / (limit_hours * 3600):.0f} %): {verdict}")
    if total > budget:
        lines += _fitting(opened, estimates, test, budget)
    return "\n".join(lines)


def _open(run_dir: Path, feature_overrides: dict) -> _Experiment:
    paths = artifacts.RunPaths(run_dir)
    load_run_config(paths)  # a clear error for a folder that is not a run
    folds = paths.folds_to_use()
    model_dir = artifacts.checked_model_dir(paths.model_dir(folds[0]))
    fold_cfg = load_config(model_dir / artifacts.CONFIG_BESIDE_WEIGHTS)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    shape = Shape(config.num_hidden_layers, config.hidden_size,
                  getattr(config, "intermediate_size", None) or 4 * config.hidden_size)
    return _Experiment(run_dir.name, folds, model_dir, dataclasses.replace(fold_cfg.features, **feature_overrides),
                       load_tokenizer(str(model_dir)), shape, fold_cfg.inference.precision,
                       fold_cfg.inference.batch_size)


def _throughput(exp: _Experiment, features, device: str) -> tuple[float, str]:
    """(windows per second of one fold, how it was obtained): measured on this CPU, or work ÷ assumed sustained
    rate for a GPU."""
    shape = exp.shape
    if device != "cpu":
        work_per_window = shape.flops(features.lengths) / len(features)
        return (DEVICES[device].sustained_tflops * 1e12 / work_per_window,
                f"L={shape.layers} H={shape.hidden} I={shape.intermediate}: {work_per_window / 1e9:.1f} GFLOP/window")
    rng = np.random.default_rng(0)
    sample = rng.choice(len(features), size=min(SAMPLE_WINDOWS, len(features)), replace=False)
    windows = [features.input_ids[i] for i in sample]
    model = load_model("qa", str(exp.model_dir))
    precision = resolve_precision(exp.precision, torch.device("cpu"))
    kwargs = dict(pad_id=exp.tokenizer.pad_token_id, batch_size=exp.batch_size, precision=precision,
                  output_names=task.OUTPUT_NAMES, progress=False)
    predict(model, windows[:8], **kwargs)  # warm-up: first calls allocate and pick kernels
    seconds = float("inf")
    for _ in range(TIMED_PASSES):
        started = time.perf_counter()
        predict(model, windows, **kwargs)
        seconds = min(seconds, time.perf_counter() - started)
    achieved = shape.flops(np.array([len(w) for w in windows])) / seconds / 1e9
    note = f"{precision}, batch {exp.batch_size}, {torch.get_num_threads()} threads: {achieved:.0f} GFLOP/s achieved"
    return len(windows) / seconds, note


def _method(device: str, test_csv: Path, rows: int, expected_rows: int | None, overhead_minutes: float,
            estimates: list[Estimate]) -> list[str]:
    scaled = f", scaled ×{expected_rows / rows:.1f} to {expected_rows} expected rows" if expected_rows else ""
    lines = [f"Inference budget: {test_csv} ({rows} rows{scaled}) on {device}", "method:",
             "  windows: the test CSV tokenized with each experiment's tokenizer and feature settings (exact)"]
    if device == "cpu":
        lines += [f"  windows/s: fold 0 of each experiment timed on {SAMPLE_WINDOWS} of its windows (seeded sample; "
                  f"fastest of {TIMED_PASSES} passes) on this machine's CPU ({os.cpu_count()} cores; a Kaggle CPU "
                  "session has 4)"]
    else:
        d = DEVICES[device]
        lines += [f"  windows/s: ASSUMED, not measured: each window's fp16 work (2·T·L·(4H²+2HI) + 4·L·T²·H) at "
                  f"{d.sustained_tflops:g} TFLOPS sustained ({100 * d.sustained_tflops / d.peak_tflops:.0f} % of the "
                  f"{device.upper()}'s {d.peak_tflops:g} TFLOPS datasheet peak)",
                  "    small models are launch-bound on GPUs: real throughput can be several times lower"]
    lines += [f"    {e.name}: {e.note}" for e in estimates]
    lines += ["  time = windows × scale × folds ÷ windows/s, plus a fixed overhead of "
              f"{overhead_minutes:g} min (pip install from the wheels, loading each fold, decoding)"]
    return lines


def _table(estimates: list[Estimate]) -> list[str]:
    header = (f"{'experiment':<16} {'folds':>5} {'max_len':>7} {'stride':>6} {'words':>6} {'windows':>9} "
              f"{'tok/win':>7} {'win/s':>8} {'per fold':>9} {'all folds':>9}")
    rows = [f"{e.name:<16} {e.folds:>5} {e.features.max_len:>7} {e.features.doc_stride:>6} "
            f"{e.features.max_context_words or '-':>6} {round(e.windows * e.scale):>9} {e.mean_tokens:>7.0f} "
            f"{e.windows_per_second:>8.1f} {_duration(e.seconds / e.folds):>9} {_duration(e.seconds):>9}"
            for e in estimates]
    return [header, *rows]


def _fitting(experiments: list[_Experiment], estimates: list[Estimate], test: pd.DataFrame,
             budget: float) -> list[str]:
    """Cut every experiment by the same factor: for each, the setting with the most windows (the least loss of
    context) whose windows are within that factor of today's."""
    if budget <= 0:
        return ["no setting fits: the fixed overhead alone exceeds the limit"]
    factor = budget / sum(e.seconds for e in estimates)
    lines = [f"to fit, cut windows to {100 * factor:.0f} % or less; candidate settings (windows recounted):"]
    words = test["context"].str.split().str.len()
    truncations = [None] + sorted({int(round(words.quantile(q), -2)) or 100 for q in CANDIDATE_WORD_QUANTILES},
                                  reverse=True)
    for exp, est in zip(experiments, estimates):
        strides = [est.features.doc_stride] + [s for s in CANDIDATE_STRIDES if s < est.features.doc_stride]
        candidates = []
        for stride in strides:
            for max_words in truncations:
                cfg = dataclasses.replace(est.features, doc_stride=stride, max_context_words=max_words)
                candidates.append((len(task.make_features(exp.tokenizer, test, cfg, with_labels=False)), cfg))
        fitting = [(n, cfg) for n, cfg in candidates if n <= est.windows * factor]
        lines.append(f"  {exp.name}, windows in the test CSV by doc stride (rows) and first N words of each context:")
        lines.append("    " + f"{'stride':>8}" + "".join(f"{w or 'all':>8}" for w in truncations))
        for i, stride in enumerate(strides):
            counts = candidates[i * len(truncations):(i + 1) * len(truncations)]
            lines.append("    " + f"{stride:>8}" + "".join(f"{n:>8}" for n, _ in counts))
        if fitting:
            n, cfg = max(fitting, key=lambda item: item[0])
            words_flag = f" --max-context-words {cfg.max_context_words}" if cfg.max_context_words else ""
            seconds = n * est.scale * est.folds / est.windows_per_second
            lines.append(f"  → {exp.name}: build with --doc-stride {cfg.doc_stride}{words_flag} "
                         f"({round(n * est.scale)} windows, {_duration(seconds)} for all folds)")
        else:
            lines.append(f"  → {exp.name}: no candidate fits; use fewer folds or experiments")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
