"""The table bench/gpu_check.sh ends with: one row per training run of one fold, from the fold's metrics.json and
saved config.

    .venv/bin/python bench/gpu_check_table.py --fold 0 --run fp16 1 outputs/gpu_check/gpucheck-fp16 \
        --run ddp 2 outputs/gpu_check/gpucheck-ddp [...]

windows/s is the median over the run's evaluation intervals of the training windows per second (all processes
together; the evaluations' own time left out), peak memory the largest per-interval peak that torch allocated on
the first process's GPU, the metric the fold's best evaluation (its CV).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml


def row(label: str, gpus: int, run_dir: Path, fold: int) -> str:
    metrics_path = run_dir / f"fold{fold}" / "metrics.json"
    if not metrics_path.is_file():
        return f"| {label} | {gpus} | | | | | | no {metrics_path}: the run failed (see its log) |"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    train = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))["train"]
    history = metrics["history"]
    speeds = [h["windows_per_s"] for h in history if h.get("windows_per_s")]
    peaks = [h["peak_memory_gib"] for h in history if "peak_memory_gib" in h]
    speed = f"{statistics.median(speeds):.1f}" if speeds else "-"
    peak = f"{max(peaks):.2f}" if peaks else "-"
    metric = metrics["metric"]
    return (f"| {label} | {gpus} | {train['precision']} | {train['batch_size']} × {gpus} | {speed} | {peak} | "
            f"{metrics[metric]:.4f} | {metrics['train_seconds']:.0f} s |")


def table(runs: list[tuple[str, int, Path]], fold: int) -> str:
    metric = "metric"
    for _, _, run_dir in runs:
        path = run_dir / f"fold{fold}" / "metrics.json"
        if path.is_file():
            metric = json.loads(path.read_text(encoding="utf-8"))["metric"]
            break
    header = (f"| run | GPUs | train.precision | batch (per GPU × GPUs) | windows/s | peak GiB (GPU 0) | "
              f"fold {fold} {metric} | train time |")
    lines = [header, "| " + " | ".join(["---"] * 8) + " |"]
    return "\n".join(lines + [row(label, gpus, run_dir, fold) for label, gpus, run_dir in runs])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fold", type=int, required=True, help="the fold every run trained")
    p.add_argument("--run", nargs=3, action="append", required=True, metavar=("LABEL", "GPUS", "RUN_DIR"),
                   help="a row: its label, the number of GPUs (processes) it trained on, its run folder; repeatable")
    args = p.parse_args(argv)
    print(table([(label, int(gpus), Path(run_dir)) for label, gpus, run_dir in args.run], args.fold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
