"""Inference budget of a kernel: windows per experiment × folds ÷ throughput, against the competition's time limit.

Windows are counted exactly, by tokenizing the test CSV with each experiment's tokenizer and feature settings.
Throughput is measured for `--device cpu` and `--device cuda` (fold 0 of each experiment on a sample of its windows,
on this machine's CPU or GPU; `--record` keeps the GPU's achieved rate in the file of measured GPUs,
measured_gpus.py). For a GPU kind (`--device t4`) it is the windows' floating-point work (from the model's shape and
each window's length) divided by a sustained rate: the one measured on that kind when the file has it, else an
assumed fp16 rate (DEVICES). When the estimate is over the limit, the windows are recounted for smaller doc strides
and context truncations, and the least cut that fits is suggested.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldnlp.config import ExperimentConfig, value_at, with_overrides
from foldnlp.errors import InputError
from foldnlp.inference import predict
from foldnlp.kaggle import measured_gpus
from foldnlp.kaggle.measured_gpus import MeasuredGpu
from foldnlp.modeling import load_tokenizer
from foldnlp.precision import resolve_precision
from foldnlp.runs import open_run
from foldnlp.tasks import get_task


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
# Windows timed per experiment for --device cuda: the test windows repeated up to this many, so that a pass takes
# long enough to time on a fast GPU.
GPU_SAMPLE_WINDOWS = 2048
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
    cfg: ExperimentConfig  # fold 0's, with the overrides
    max_words: int | None  # the task's first-N-words truncation in force, if it has one
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
    cfg: ExperimentConfig  # fold 0's, with the overrides
    task: object
    tokenizer: object
    shape: Shape


def plan(experiments: list[Path], test_csv: Path, *, device: str, limit_hours: float, expected_rows: int | None,
         overhead_minutes: float, overrides: list[str], measured: dict[str, MeasuredGpu] | None = None,
         record: Path | None = None) -> str:
    """The printed budget: method and assumptions, per-experiment estimate, total against the limit, and the doc
    stride / context truncation that would fit when over.
    measured: GPUs measured earlier, by kind (measured_gpus.read), used in place of DEVICES' assumed rates.
    record (with device "cuda"): the file of measured GPUs to add this GPU's rate to, timed on the first
    experiment."""
    measured = measured or {}
    kinds = sorted(set(DEVICES) | set(measured))
    if device not in ("cpu", "cuda", *kinds):
        raise InputError(f"--device {device!r}: one of cpu, cuda, {', '.join(kinds)}")
    if record is not None and device != "cuda":
        raise InputError("--record keeps a rate measured on this machine's GPU: it needs --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda measures on this machine's GPU, and torch sees none here")
    opened = [_open(Path(e), overrides) for e in experiments]
    test, _ = opened[0].task.read_test(test_csv, None)
    scale = (expected_rows or len(test)) / len(test)
    estimates = []
    for exp in opened:
        windows = exp.task.windows(exp.tokenizer, test, with_targets=False)
        lengths = np.array([len(ids) for ids in windows.input_ids])
        if device in ("cpu", "cuda"):
            windows_per_second, note = _throughput(exp, windows.input_ids, device)
        else:
            windows_per_second, note = _scaled(exp, windows.input_ids, sustained_rate(device, measured))
        max_words = value_at(exp.cfg, exp.task.truncation_key) if exp.task.truncation_key else None
        estimates.append(Estimate(exp.name, len(exp.folds), exp.cfg, max_words, len(windows),
                                  float(lengths.mean()), windows_per_second, scale, note))
    lines = _method(device, test_csv, len(test), expected_rows, overhead_minutes, estimates, measured.get(device))
    if record is not None:
        lines.append(_record(record, opened[0], test))
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


def _open(run_dir: Path, overrides: list[str]) -> _Experiment:
    run = open_run(run_dir)
    model_dir = run.model_dir(run.folds[0])
    cfg = run.fold_config(run.folds[0], overrides)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    shape = Shape(config.num_hidden_layers, config.hidden_size,
                  getattr(config, "intermediate_size", None) or 4 * config.hidden_size)
    return _Experiment(run.name, run.folds, model_dir, cfg, get_task(cfg), load_tokenizer(str(model_dir)), shape)


def sustained_rate(device: str, measured: dict[str, MeasuredGpu]) -> float:
    """Sustained TFLOPS of a GPU kind: measured on that kind (bench/gpu_check.sh) when there is a figure for it, else
    DEVICES' assumed fp16 rate."""
    if device in measured:
        return measured[device].sustained_tflops
    return DEVICES[device].sustained_tflops


def _scaled(exp: _Experiment, input_ids: list[np.ndarray], tflops: float) -> tuple[float, str]:
    """(windows per second of one fold, how it was obtained) on a GPU kind: each window's work at that rate."""
    shape = exp.shape
    work_per_window = shape.flops(np.array([len(ids) for ids in input_ids])) / len(input_ids)
    return (tflops * 1e12 / work_per_window,
            f"L={shape.layers} H={shape.hidden} I={shape.intermediate}: {work_per_window / 1e9:.1f} GFLOP/window")


def _throughput(exp: _Experiment, input_ids: list[np.ndarray], device: str) -> tuple[float, str]:
    """(windows per second of one fold, how it was obtained), measured on this machine's CPU or GPU ("cuda")."""
    windows, precision, batch_size, seconds = _timed(exp, input_ids, device)
    achieved = exp.shape.flops(np.array([len(w) for w in windows])) / seconds / 1e9
    where = f"{torch.get_num_threads()} threads" if device == "cpu" else torch.cuda.get_device_name()
    note = f"{precision}, batch {batch_size}, {where}: {achieved:.0f} GFLOP/s achieved"
    return len(windows) / seconds, note


def _timed(exp: _Experiment, input_ids: list[np.ndarray], device: str) -> tuple[list[np.ndarray], str, int, float]:
    """(windows timed, precision, batch size, seconds of the fastest pass) of fold 0 predicting a sample of the
    windows: SAMPLE_WINDOWS of them drawn with a fixed seed on a CPU, all of them repeated up to GPU_SAMPLE_WINDOWS
    on a GPU."""
    if device == "cpu":
        rng = np.random.default_rng(0)
        sample = rng.choice(len(input_ids), size=min(SAMPLE_WINDOWS, len(input_ids)), replace=False)
    else:
        sample = np.resize(np.arange(len(input_ids)), max(GPU_SAMPLE_WINDOWS, len(input_ids)))
    windows = [input_ids[i] for i in sample]
    torch_device = torch.device(device)
    model = exp.task.load_model(str(exp.model_dir)).to(torch_device)
    precision = resolve_precision(exp.cfg.inference.precision, torch_device)
    batch_size = exp.cfg.inference.batch_size
    kwargs = dict(pad_id=exp.tokenizer.pad_token_id, batch_size=batch_size, precision=precision,
                  outputs=exp.task.outputs, progress=False)
    predict(model, windows[:8], **kwargs)  # warm-up: first calls allocate and pick kernels
    seconds = float("inf")
    for _ in range(TIMED_PASSES):  # (predict copies its outputs to the host: a pass ends when the GPU is done)
        started = time.perf_counter()
        predict(model, windows, **kwargs)
        seconds = min(seconds, time.perf_counter() - started)
    return windows, precision, batch_size, seconds


def _record(path: Path, exp: _Experiment, test: pd.DataFrame) -> str:
    """Time the experiment's fold 0 on this GPU and keep its achieved rate in the file of measured GPUs."""
    input_ids = exp.task.windows(exp.tokenizer, test, with_targets=False).input_ids
    windows, precision, _, seconds = _timed(exp, input_ids, "cuda")
    shape = exp.shape
    measured = MeasuredGpu(
        gpu=torch.cuda.get_device_name(), precision=precision, experiment=exp.name,
        sustained_tflops=float(f"{shape.flops(np.array([len(w) for w in windows])) / seconds / 1e12:.4g}"),
        shape=f"L={shape.layers} H={shape.hidden} I={shape.intermediate}", windows=len(windows),
        windows_per_second=round(len(windows) / seconds, 1), measured_on=datetime.date.today().isoformat())
    kind = measured_gpus.record(path, measured)
    return (f"recorded in {path} as {kind!r}: {measured.sustained_tflops:g} TFLOPS sustained ({measured.gpu}, "
            f"{precision}, {exp.name}); `--device {kind}` uses it from now on")


def _method(device: str, test_csv: Path, rows: int, expected_rows: int | None, overhead_minutes: float,
            estimates: list[Estimate], measured: MeasuredGpu | None) -> list[str]:
    scaled = f", scaled ×{expected_rows / rows:.1f} to {expected_rows} expected rows" if expected_rows else ""
    lines = [f"Inference budget: {test_csv} ({rows} rows{scaled}) on {device}", "method:",
             "  windows: the test CSV tokenized with each experiment's tokenizer and feature settings (exact)"]
    if device == "cpu":
        lines += [f"  windows/s: fold 0 of each experiment timed on {SAMPLE_WINDOWS} of its windows (seeded sample; "
                  f"fastest of {TIMED_PASSES} passes) on this machine's CPU ({os.cpu_count()} cores; a Kaggle CPU "
                  "session has 4)"]
    elif device == "cuda":
        lines += [f"  windows/s: fold 0 of each experiment timed on its windows repeated up to {GPU_SAMPLE_WINDOWS} "
                  f"(fastest of {TIMED_PASSES} passes) on this machine's GPU ({torch.cuda.get_device_name()})"]
    elif measured is not None:
        m = measured
        lines += [f"  windows/s: each window's work (2·T·L·(4H²+2HI) + 4·L·T²·H) at {m.sustained_tflops:g} TFLOPS "
                  f"sustained, MEASURED on {m.gpu} ({m.measured_on}: {m.experiment}, {m.shape}, {m.precision}, "
                  f"{m.windows_per_second:g} windows/s)",
                  "    a backbone of another shape uses the GPU differently: treat the estimate as approximate"]
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
    rows = [f"{e.name:<16} {e.folds:>5} {e.cfg.features.max_len:>7} {e.cfg.features.doc_stride:>6} "
            f"{e.max_words or '-':>6} {round(e.windows * e.scale):>9} {e.mean_tokens:>7.0f} "
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
    for exp, est in zip(experiments, estimates):
        words = pd.Series([len(t.split()) for t in exp.task.texts(test)])
        truncations = [None]
        if exp.task.truncation_key is not None:
            truncations += sorted({int(round(words.quantile(q), -2)) or 100 for q in CANDIDATE_WORD_QUANTILES},
                                  reverse=True)
        stride_now = est.cfg.features.doc_stride
        strides = [stride_now] + [s for s in CANDIDATE_STRIDES if s < stride_now]
        candidates = []
        for stride in strides:
            for max_words in truncations:
                changes = [f"features.doc_stride={stride}"]
                if max_words is not None:
                    changes.append(f"{exp.task.truncation_key}={max_words}")
                cfg = with_overrides(exp.cfg, changes)
                candidates.append((len(get_task(cfg).windows(exp.tokenizer, test, with_targets=False)), stride,
                                   max_words))
        fitting = [c for c in candidates if c[0] <= est.windows * factor]
        lines.append(f"  {exp.name}, windows in the test CSV by doc stride (rows) and first N words of each text:")
        lines.append("    " + f"{'stride':>8}" + "".join(f"{w or 'all':>8}" for w in truncations))
        for i, stride in enumerate(strides):
            counts = candidates[i * len(truncations):(i + 1) * len(truncations)]
            lines.append("    " + f"{stride:>8}" + "".join(f"{n:>8}" for n, _, _ in counts))
        if fitting:
            n, stride, max_words = max(fitting, key=lambda item: item[0])
            words_flag = f" --set {exp.task.truncation_key}={max_words}" if max_words else ""
            seconds = n * est.scale * est.folds / est.windows_per_second
            lines.append(f"  → {exp.name}: build with --doc-stride {stride}{words_flag} "
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
