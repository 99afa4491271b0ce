"""How evenly the folds of a span-segmentation corpus share out each class's spans: stratified on each document's
span counts per class (the spans task's default stratum, SpansTask.fold_table) beside stratified on the classes a
document holds alone, over several fold seeds, in one run.

Figure: per seed, the mean over folds and classes of |fold's share of the class's spans - 1/n_folds| (0 = every fold
holds exactly its share); printed as the median and the worst over the seeds. Classes with fewer spans than folds are
left out (no split can share them). Usage:

    python bench/span_folds.py --config configs/spans_ner_hi.yaml [--seeds 10]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import pandas as pd

from foldnlp.config import load_config
from foldnlp.folds import assign_folds
from foldnlp.tasks import get_task


def share_error(table: pd.DataFrame, counts: pd.DataFrame, n_folds: int, seed: int) -> float:
    """Mean |share - 1/n_folds| of the folds assigned by stratifying table's `stratum` with this seed."""
    fold = assign_folds(table, n_folds, seed, "stratum", None)["fold"].to_numpy()
    per_fold = counts.groupby(fold).sum()  # (n_folds, classes) spans
    return float((per_fold / per_fold.sum() - 1 / n_folds).abs().to_numpy().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a spans experiment config (its data.train_csv is read)")
    parser.add_argument("--seeds", type=int, default=10, help="fold seeds 0..N-1 (default 10)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    task = get_task(cfg)
    examples = task.read_train()
    n_folds = cfg.folds.n_folds
    counts = pd.DataFrame([Counter(cls for cls, _, _ in spans) for spans in examples["spans"]]).fillna(0)
    counts = counts.loc[:, counts.sum() >= n_folds]
    by_counts = task.fold_table(examples)
    by_presence = examples.assign(stratum=[tuple(sorted({c for c, _, _ in s})) for s in examples["spans"]])
    print(f"{len(examples)} documents, {counts.shape[1]} classes with >= {n_folds} spans, {n_folds} folds, "
          f"seeds 0-{args.seeds - 1}: mean |fold share of a class's spans - 1/{n_folds}|")
    for label, table in (("span counts per class (default)", by_counts), ("classes present", by_presence)):
        errors = [share_error(table, counts, n_folds, seed) for seed in range(args.seeds)]
        print(f"  {label:<32} median {np.median(errors):.4f}  worst {max(errors):.4f}")


if __name__ == "__main__":
    main()
