"""The recipe ablation of the README ("The winners' toolbox"): each variant of a base experiment trained on the same
folds with the same seed, through the ordinary commands (train_fold.py, infer.py, ensemble.py, score.py), then one
table: CV (overall and per fold), the score on the test answers, and training time.

A variant is a name and the `--set` overrides it adds to the base config (a YAML mapping, see
bench/recipe_ablation.yaml); its run folder is <output_dir>/abl-<name>/. Finished folds are kept and an
interrupted one resumes, so re-running the same command trains only what is missing: a long ablation can be run
over several sittings, and `--only` picks variants. `--folds 0` screens on one fold (its CV is that fold's OOF
score and its test score is fold 0's model alone); the README table is on every fold. Usage:

    python bench/recipe_ablation.py --config configs/default.yaml --variants bench/recipe_ablation.yaml \\
        [--only default ema] [--folds 0] [--answers input/test_answers.csv] [--table outputs/ablation.md]

Run it alone on the machine: its training times are only comparable when nothing else runs beside it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

from foldnlp.artifacts import RunPaths
from foldnlp.config import load_config
from foldnlp.report.experiments import summarize
from foldnlp.steps.score import score_submission
from foldnlp.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def read_variants(path: Path) -> dict[str, list[str]]:
    """{name: [--set overrides]} from the variants file, in its order; the base recipe is a variant with none."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not all(isinstance(sets, list | type(None)) for sets in raw.values()):
        sys.exit(f"{path}: expected a mapping of variant name to a list of KEY=VALUE overrides")
    return {str(name): [str(s) for s in sets or []] for name, sets in raw.items()}


def run(command: list[str]) -> None:
    """One CLI step, its output shown as it comes; a failed step stops the ablation with its exit status."""
    print("+", " ".join(command), flush=True)
    done = subprocess.run([sys.executable, *command], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(done.returncode)


def run_variant(config: str, name: str, sets: list[str], folds: list[int], answers: Path | None) -> dict:
    """Train (or finish) every fold of one variant, predict the test set, blend its folds, score; its row."""
    overrides = [f"name=abl-{name}", *sets]
    set_args = [arg for override in overrides for arg in ("--set", override)]
    cfg = load_config(ROOT / config, overrides)
    folder = RunPaths.of(ROOT / cfg.output_dir, cfg.name).root
    started = time.perf_counter()
    for fold in folds:
        run(["train_fold.py", "--config", config, *set_args, "--fold", str(fold), "--resume", "--no-wandb", "--quiet"])
    fold_args = ["--folds", *map(str, folds)]
    run(["infer.py", "--config", config, *set_args, *fold_args, "--quiet"])
    submission = folder / "submission.csv"
    run(["ensemble.py", "--experiments", str(folder), "--out", str(submission), "--quiet"])
    summary = summarize(folder)
    test_score = None
    if answers is not None:
        test_score, _ = score_submission(get_task(cfg), submission, answers)
    return {"variant": name, "sets": " ".join(sets) or "(base recipe)", "cv": summary.cv,
            "folds": [record.score for record in summary.folds],
            "train_s": sum(record.seconds for record in summary.folds), "test": test_score,
            "wall_s": time.perf_counter() - started}


def table(rows: list[dict], base: str | None) -> str:
    """The Markdown table; Δ columns against the base variant's row when it is among them."""
    reference = next((row for row in rows if row["variant"] == base), None)
    lines = ["| variant | overrides | CV | Δ CV | per fold | test | Δ test | training s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        delta_cv = "" if reference is None else f"{row['cv'] - reference['cv']:+.4f}"
        test = "" if row["test"] is None else f"{row['test']:.4f}"
        delta_test = ("" if reference is None or row["test"] is None or reference["test"] is None
                      else f"{row['test'] - reference['test']:+.4f}")
        per_fold = " / ".join(f"{score:.4f}" for score in row["folds"])
        lines.append(f"| {row['variant']} | `{row['sets']}` | {row['cv']:.4f} | {delta_cv} | {per_fold} | {test} | "
                     f"{delta_test} | {row['train_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/default.yaml", help="the base experiment (default: %(default)s)")
    parser.add_argument("--variants", type=Path, default=ROOT / "bench" / "recipe_ablation.yaml",
                        help="YAML mapping of variant name to its --set overrides (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these variants only (default: all)")
    parser.add_argument("--folds", nargs="+", type=int, help="train these folds only (default: every fold)")
    parser.add_argument("--base", default="default", help="the variant the Δ columns compare with (default: "
                        "%(default)s)")
    parser.add_argument("--answers", type=Path, default=ROOT / "input" / "test_answers.csv",
                        help="the test set's answers to score each variant's submission on (default: %(default)s; "
                        "a missing file leaves the test column empty)")
    parser.add_argument("--table", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args()
    variants = read_variants(args.variants)
    unknown = sorted(set(args.only or []) - set(variants))
    if unknown:
        sys.exit(f"--only {' '.join(unknown)}: not in {args.variants} (it has {', '.join(variants)})")
    chosen = [name for name in variants if not args.only or name in args.only]
    cfg = load_config(ROOT / args.config)
    folds = args.folds if args.folds is not None else list(range(cfg.folds.n_folds))
    run(["make_folds.py", "--config", args.config])  # the same folds for every variant (unchanged if present)
    answers = args.answers if args.answers.is_file() else None
    rows = []
    for name in chosen:
        print(f"=== variant {name}: {' '.join(variants[name]) or '(base recipe)'}", flush=True)
        rows.append(run_variant(args.config, name, variants[name], folds, answers))
        print(table(rows, args.base), flush=True)
    text = table(rows, args.base)
    print(f"\nfolds {' '.join(map(str, folds))} of {args.config}, seed {cfg.train.seed} (+ fold):\n{text}")
    if args.table is not None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
