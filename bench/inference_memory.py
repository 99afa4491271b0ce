"""Peak memory of test inference over many long contexts: infer() streams each chunk's scores to disk, so peak RSS
depends on inference.chunk_chars, not on the number of contexts.

Builds a test set of N contexts of C characters from real Hindi contexts (input/train.csv, or --data), and a run
folder whose one fold is the default model's tokenizer (real windows) on a small random BERT (so the benchmark
measures the pipeline's memory, not a big model's weights). Each case runs infer() in a fresh process and reports
its peak RSS (ru_maxrss), wall time, windows and the size of the scores file.

    .venv/bin/python bench/inference_memory.py                          # 500 and 2,000 contexts of 40k characters
    .venv/bin/python bench/inference_memory.py --contexts 500 --chunk-chars 1000000 5000000 0   # 0 = one chunk
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Runs in the measured child process: one infer() call, then its own peak RSS.
CHILD = """
import json, resource, sys, time
from foldnlp.steps.infer import infer
run_dir, test_csv, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
infer(run_dir, folds=[0], test_csv=test_csv, sample_csv=None, overrides=[], batch_size=64,
      precision="fp32", chunk_chars=chunk or 10**12, progress=False)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_run(folder: Path, max_len: int, doc_stride: int) -> Path:
    """A one-fold run: the default model's tokenizer with a randomly initialised 2-layer, hidden-64 BERT."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from foldnlp import artifacts
    from foldnlp.config import load_config, to_dict
    from foldnlp.modeling import load_tokenizer
    from foldnlp.pretrained import DEFAULT_MODEL

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    cfg = load_config(None, ["name=memory", f"output_dir={folder}", f"features.max_len={max_len}",
                             f"features.doc_stride={doc_stride}"])
    paths = artifacts.RunPaths.of(cfg.output_dir, cfg.name)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=128,
                                                max_position_embeddings=514))
    model.save_pretrained(paths.model_dir(0))
    tokenizer.save_pretrained(paths.model_dir(0))
    text = yaml.safe_dump(to_dict(cfg))
    (paths.model_dir(0) / artifacts.CONFIG_BESIDE_WEIGHTS).write_text(text)
    paths.config.write_text(text)
    paths.metrics(0).write_text("{}")
    return paths.root


def build_test(path: Path, source: Path, n_contexts: int, n_chars: int, seed: int) -> int:
    """n_contexts contexts of n_chars characters, each a random sequence of real contexts; returns total chars."""
    rng = np.random.default_rng(seed)
    pool = pd.read_csv(source, dtype=str)["context"].drop_duplicates().tolist()
    contexts = []
    for _ in range(n_contexts):
        parts, size = [], 0
        while size < n_chars:
            parts.append(pool[rng.integers(len(pool))])
            size += len(parts[-1]) + 1
        contexts.append(" ".join(parts)[:n_chars])
    ids = [f"c{i:05d}" for i in range(n_contexts)]
    pd.DataFrame({"id": ids, "context": contexts, "question": "यह किस बारे में है?", "language": "hindi"}).to_csv(
        path, index=False)
    pd.DataFrame({"id": ids, "PredictionString": ""}).to_csv(path.with_name("sample_submission.csv"), index=False)
    return sum(map(len, contexts))


def main() -> None:
    from foldnlp import artifacts, test_outputs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "input" / "train.csv"), help="CSV whose contexts are sampled")
    p.add_argument("--contexts", type=int, nargs="+", default=[500, 2000], help="test-set sizes to measure")
    p.add_argument("--chars", type=int, default=40_000, help="characters per context")
    p.add_argument("--chunk-chars", type=int, nargs="+", default=[1_000_000],
                   help="inference.chunk_chars values to measure (0 = the whole test set as one chunk)")
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--doc-stride", type=int, default=96)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="foldnlp-memory-") as tmp:
        run_dir = build_run(Path(tmp) / "outputs", args.max_len, args.doc_stride)
        print(f"model: random 2-layer BERT (hidden 64) with the multilingual-e5-small tokenizer; max_len "
              f"{args.max_len}, stride {args.doc_stride}, fp32, batch 64, {os.cpu_count()} CPUs")
        print(f"{'contexts':>8} {'chars':>12} {'chunk_chars':>12} {'test CSV MB':>11} {'scores MB':>9} "
              f"{'seconds':>8} {'peak RSS MB':>11}")
        for n in args.contexts:
            test_dir = Path(tmp) / f"test{n}"
            test_dir.mkdir()
            total = build_test(test_dir / "test.csv", Path(args.data), n, args.chars, seed=n)
            for chunk in args.chunk_chars:
                started = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), str(test_dir / "test.csv"),
                                      str(chunk)], capture_output=True, text=True, cwd=ROOT)
                if out.returncode:
                    sys.exit(f"infer failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                latest = test_outputs.records(artifacts.RunPaths(Path(run_dir)))[-1]  # the one just written
                scores_mb = latest.home.test_scores(latest.key, 0).stat().st_size / 2**20
                csv_mb = (test_dir / "test.csv").stat().st_size / 2**20
                print(f"{n:>8} {total:>12,} {chunk or 'all':>12} {csv_mb:>11.0f} {scores_mb:>9.0f} "
                      f"{result['seconds']:>8.0f} {result['peak_rss_mb']:>11.0f}   "
                      f"(wall {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
