"""Benchmark the QA path with the default model: inference windows/s (fp32, bf16), decoding ms per 1,000 windows,
and training windows/s. Prints medians of --repeats runs, with a padded-to-max_len baseline measured side by side.

    .venv/bin/python bench/qa_inference.py [--data input/train.csv] [--max-len 384] [--doc-stride 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate.state import AcceleratorState  # noqa: E402

from foldnlp.batching import TrainingSet  # noqa: E402
from foldnlp.config import load_config  # noqa: E402
from foldnlp.inference import pad_batch, predict  # noqa: E402
from foldnlp.modeling import load_tokenizer  # noqa: E402
from foldnlp.precision import autocast, cpu_has_bf16  # noqa: E402
from foldnlp.pretrained import DEFAULT_MODEL  # noqa: E402
from foldnlp.tasks import get_task  # noqa: E402
from foldnlp.training import Evaluation, fit, make_accelerator  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median wall seconds of fn() over repeats."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.inference_mode()
def padded_baseline(model, input_ids, pad_id: int, max_len: int, batch_size: int, precision: str) -> None:
    """What Trainer.predict does with padding='max_length': every window padded to max_len, in data order."""
    model.eval()
    for lo in range(0, len(input_ids), batch_size):
        batch = pad_batch(input_ids[lo : lo + batch_size], pad_id)
        width = batch["input_ids"].shape[1]
        batch = {k: torch.nn.functional.pad(v, (0, max_len - width), value=pad_id if k == "input_ids" else 0)
                 for k, v in batch.items()}
        with autocast(precision, torch.device("cpu")):
            model(**batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="input/train.csv", help="chaii-format CSV with answers")
    p.add_argument("--rows", type=int, default=200, help="questions to use")
    p.add_argument("--max-len", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32, help="inference batch size")
    p.add_argument("--train-windows", type=int, default=160, help="windows per training measurement (batch 16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(None, [f"data.train_csv={args.data}", f"features.max_len={args.max_len}",
                             f"features.doc_stride={args.doc_stride}", "model.dropout=0.0", "train.epochs=1",
                             "train.batch_size=16", "train.evals_per_epoch=1", "train.warmup_ratio=0.0",
                             "model.freeze_word_embeddings=true"])
    task = get_task(cfg)
    frame = task.read_train().head(args.rows)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    windows = task.windows(tokenizer, frame, with_targets=True)
    n, tokens = len(windows), sum(len(ids) for ids in windows.input_ids)
    print(f"{len(frame)} questions → {n} windows of max_len {args.max_len} / stride {args.doc_stride}; "
          f"{tokens / (n * args.max_len):.0%} of a padded batch's tokens are real; {args.threads} threads; "
          f"bf16 CPU support: {cpu_has_bf16()}; medians of {args.repeats}")

    model = task.load_model(DEFAULT_MODEL)
    pad = tokenizer.pad_token_id
    for precision in ("fp32", "bf16"):
        ours = timed(lambda p=precision: predict(model, windows.input_ids, pad_id=pad, batch_size=args.batch_size,
                                                 precision=p, outputs=task.outputs, progress=False),
                     args.repeats)
        base = timed(lambda p=precision: padded_baseline(model, windows.input_ids, pad, args.max_len,
                                                         args.batch_size, p), args.repeats)
        print(f"inference {precision}: {n / ours:6.1f} windows/s  (padded-to-max_len baseline {n / base:6.1f}; "
              f"×{base / ours:.2f})")

    outputs = predict(model, windows.input_ids, pad_id=pad, batch_size=args.batch_size, precision="bf16",
                      outputs=task.outputs, progress=False)
    decode = lambda: task.decode(frame, task.to_scores(frame, windows, outputs))  # noqa: E731
    seconds = timed(decode, args.repeats)
    print(f"decoding (char scores + best span + post-processing): {1000 * seconds / n * 1000:.1f} ms per 1,000 windows "
          f"({1e6 * seconds / n:.0f} µs per window)")

    every = task.training_set(windows)
    take = list(range(min(args.train_windows, n)))
    data = TrainingSet([every.input_ids[i] for i in take], {k: v[take] for k, v in every.targets.items()},
                       keep_chance=np.ones(len(take)))  # every window, answer or not, as the old bench did
    for precision in ("fp32", "bf16"):
        train_cfg = dataclasses.replace(cfg.train, precision=precision)

        def train_once(train_cfg=train_cfg):
            AcceleratorState._reset_state(True)  # accelerate keeps one precision per process; the bench uses two
            fresh = task.load_model(DEFAULT_MODEL, cfg.model)
            fit(fresh, data, train_cfg, accelerator=make_accelerator(train_cfg), pad_id=pad, loss_fn=task.loss,
                evaluate=lambda m: Evaluation(0.0), save_best=lambda m, e: None, head_prefixes=task.head_prefixes,
                seed=0, progress=False)

        seconds = timed(train_once, args.repeats)
        print(f"training {precision} (frozen word embeddings, batch 16, dynamic padding): "
              f"{len(take) / seconds:.1f} windows/s (incl. model load)")

if __name__ == "__main__":
    main()
