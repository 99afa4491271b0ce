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
from accelerate.state import AcceleratorState  # noqa: E402
import torch  # noqa: E402

from foldnlp.config import DecodeConfig, FeaturesConfig, ModelConfig, TrainConfig  # noqa: E402
from foldnlp.data import read_qa_csv  # noqa: E402
from foldnlp.inference import pad_batch, predict  # noqa: E402
from foldnlp.modeling import load_model, load_tokenizer  # noqa: E402
from foldnlp.precision import autocast, cpu_has_bf16  # noqa: E402
from foldnlp.pretrained import DEFAULT_MODEL  # noqa: E402
from foldnlp.tasks.qa import task  # noqa: E402
from foldnlp.training import Evaluation, TrainingSet, fit, make_accelerator  # noqa: E402


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

    frame = read_qa_csv(args.data, with_answers=True).head(args.rows)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    cfg = FeaturesConfig(max_len=args.max_len, doc_stride=args.doc_stride)
    features = task.make_features(tokenizer, frame, cfg, with_labels=True)
    n, tokens = len(features), int(features.lengths.sum())
    print(f"{len(frame)} questions → {n} windows of max_len {args.max_len} / stride {args.doc_stride}; "
          f"{tokens / (n * args.max_len):.0%} of a padded batch's tokens are real; {args.threads} threads; "
          f"bf16 CPU support: {cpu_has_bf16()}; medians of {args.repeats}")

    model = load_model("qa", DEFAULT_MODEL, ModelConfig(dropout=0.0))
    pad = tokenizer.pad_token_id
    for precision in ("fp32", "bf16"):
        ours = timed(lambda p=precision: predict(model, features.input_ids, pad_id=pad, batch_size=args.batch_size,
                                                 precision=p, output_names=task.OUTPUT_NAMES, progress=False),
                     args.repeats)
        base = timed(lambda p=precision: padded_baseline(model, features.input_ids, pad, args.max_len,
                                                         args.batch_size, p), args.repeats)
        print(f"inference {precision}: {n / ours:6.1f} windows/s  (padded-to-max_len baseline {n / base:6.1f}; "
              f"×{base / ours:.2f})")

    outputs = predict(model, features.input_ids, pad_id=pad, batch_size=args.batch_size, precision="bf16",
                      output_names=task.OUTPUT_NAMES, progress=False)
    decode = lambda: task.decode(frame, task.char_scores(frame, features, outputs), DecodeConfig())  # noqa: E731
    seconds = timed(decode, args.repeats)
    print(f"decoding (char scores + best span + post-processing): {1000 * seconds / n * 1000:.1f} ms per 1,000 windows "
          f"({1e6 * seconds / n:.0f} µs per window)")

    train_cfg = TrainConfig(epochs=1, batch_size=16, evals_per_epoch=1, negative_fraction=1.0, warmup_ratio=0.0)
    take = np.arange(min(args.train_windows, n))
    data = TrainingSet([features.input_ids[i] for i in take],
                       {"start_positions": features.start_positions[take],
                        "end_positions": features.end_positions[take]},
                       is_negative=np.zeros(len(take), bool))
    for precision in ("fp32", "bf16"):
        def train_once(precision=precision):
            AcceleratorState._reset_state(True)  # accelerate keeps one precision per process; the bench uses two
            fresh = load_model("qa", DEFAULT_MODEL, ModelConfig(dropout=0.0, freeze_word_embeddings=True))
            fit(fresh, data, dataclasses.replace(train_cfg, precision=precision),
                accelerator=make_accelerator(TrainConfig(precision=precision)), pad_id=pad,
                loss_fn=task.make_loss(train_cfg), evaluate=lambda m: Evaluation(0.0), save_best=lambda m, e: None,
                head_prefixes=task.HEAD_PREFIXES, seed=0, progress=False)

        seconds = timed(train_once, args.repeats)
        print(f"training {precision} (frozen word embeddings, batch 16, dynamic padding): "
              f"{len(take) / seconds:.1f} windows/s (incl. model load)")


if __name__ == "__main__":
    main()
