"""Benchmark document classification on IMDB reviews: foldnlp's classify task side by side with a plain
transformers.Trainer fine-tune of the same model on the same reviews, in one run.

Samples --train-reviews and --test-reviews reviews (balanced by label) from --data, writes them as an experiment
folder (train.csv, test.csv, sample_submission.csv) in a temporary folder (or --work-dir), makes --folds folds and
trains fold 0 only, so every variant trains on the same rows; each fold-0 model then predicts the test sample and
the bench scores its accuracy against the true labels. Variants:

    foldnlp-head-tail   foldnlp, classify.truncation=head_tail (the first max_len-2-tail and the last --tail-tokens
                        tokens of each review: one window per review)
    foldnlp-head        foldnlp, classify.truncation=head (the first max_len-2 tokens), same max_len
    trainer             AutoModelForSequenceClassification + transformers.Trainer on the same token ids as
                        foldnlp-head-tail (built by head_tail_ids), same epochs, lr, batch size, warmup 0.1, linear
                        schedule, weight decay 0.01, dropout 0.1, frozen word embeddings, bf16 where the CPU has it,
                        seed 42, random batches with dynamic padding, no evaluation or checkpoints; trainer.predict
                        (batch 64) on the test sample

Windows are reviews (one window per review with either truncation): training windows/s = train rows * epochs /
train s; inference windows/s = test reviews / infer s. foldnlp's train s is train_fold's train_seconds (its one
held-out evaluation and the checkpoint save included), its infer s the wall time of infer() (checkpoint load,
tokenization and writing the predictions included); the lines under the table add train_s_to_last_eval (the
training steps alone at one epoch, evals_per_epoch being 1) and forward_s (infer()'s forward passes alone). The
Trainer's train s is trainer.train(), its infer s trainer.predict() on token ids built beforehand. One run of each
variant (no repeats).

    .venv/bin/python bench/classify.py --data /work/shared/data/imdb
    .venv/bin/python bench/classify.py --data DIR --train-reviews 40 --test-reviews 20 --model TINY_MODEL_DIR \\
        --variants trainer                                                                   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from foldnlp.pretrained import DEFAULT_MODEL  # noqa: E402

COLUMNS = ("source_file", "review_id", "rating", "label", "text")
VARIANTS = {"foldnlp-head-tail": "foldnlp head+tail", "foldnlp-head": "foldnlp head-only",
            "trainer": "Trainer head+tail"}
TRUNCATION = {"foldnlp-head-tail": "head_tail", "foldnlp-head": "head"}
DROPOUT, WARMUP_RATIO, WEIGHT_DECAY, SEED, PREDICT_BATCH = 0.1, 0.1, 0.01, 42, 64
FOLD = 0


@dataclass
class Result:
    variant: str
    train_rows: int
    epochs: float
    train_s: float
    test_reviews: int
    infer_s: float
    accuracy: float
    notes: dict = field(default_factory=dict)  # what else was measured (model-only seconds, windows counted)

    def row(self) -> dict:
        return {"variant": self.variant, "train_rows": self.train_rows, "epochs": self.epochs,
                "train_s": round(self.train_s, 2),
                "train_windows_per_s": round(self.train_rows * self.epochs / self.train_s, 2),
                "test_reviews": self.test_reviews, "infer_s": round(self.infer_s, 2),
                "infer_windows_per_s": round(self.test_reviews / self.infer_s, 2),
                "test_accuracy": round(self.accuracy, 4), **self.notes}


# ---- data ---------------------------------------------------------------------------------------------------------
def read_split(path: Path) -> pd.DataFrame:
    """One IMDB split (source_file,review_id,rating,label,text), checked: the columns there, labels 0/1, no blanks."""
    if not path.is_file():
        raise SystemExit(f"{path} does not exist (--data must hold train.csv and test.csv)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    bad = ~frame["label"].isin(["0", "1"]) | (frame["text"].str.strip() == "") | (frame["review_id"] == "")
    if bad.any():
        raise SystemExit(f"{path}: {bad.sum()} row(s) with a label other than 0/1, an empty text or no review_id "
                         f"(first: row {int(np.flatnonzero(bad)[0]) + 2})")
    frame["label"] = frame["label"].astype(int)
    frame["row"] = np.arange(len(frame))  # position in the source file, kept for ids
    return frame


def sample_balanced(frame: pd.DataFrame, n: int, seed: int, what: str) -> pd.DataFrame:
    """n rows, half of each label (the odd one goes to label 1), drawn with seed, in shuffled order."""
    rng = np.random.default_rng(seed)
    parts = []
    for label, want in ((0, n // 2), (1, n - n // 2)):
        rows = np.flatnonzero(frame["label"].to_numpy() == label)
        if want > len(rows):
            raise SystemExit(f"{what}: {n} reviews need {want} of label {label}; the file has {len(rows)}")
        parts.append(rng.choice(rows, size=want, replace=False))
    return frame.iloc[rng.permutation(np.concatenate(parts))].reset_index(drop=True)


def with_ids(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """An id column '<split>-<review_id>'. IMDB numbers positive and negative reviews separately, so a review_id may
    be sampled twice: those rows get '-<source row>' appended. The ids are then checked to be unique."""
    ids = split + "-" + frame["review_id"]
    shared = ids.duplicated(keep=False)
    ids[shared] = ids[shared] + "-" + frame.loc[shared, "row"].astype(str)
    if ids.duplicated().any():
        raise SystemExit(f"{split}: ids not unique: {', '.join(ids[ids.duplicated()].head(5))}")
    return frame.assign(id=ids.to_numpy())


def write_experiment(folder: Path, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Path]:
    """train.csv (id,text,label), test.csv (id,text) and sample_submission.csv (id,label) in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.csv" for name in ("train", "test", "sample_submission")}
    train[["id", "text", "label"]].to_csv(paths["train"], index=False)
    test[["id", "text"]].to_csv(paths["test"], index=False)
    test[["id"]].assign(label=0).to_csv(paths["sample_submission"], index=False)
    return paths


# ---- foldnlp ------------------------------------------------------------------------------------------------------
def experiment_config(work: Path, data: dict[str, Path], args, variant: str):
    """The classify experiment of one foldnlp variant (written to <work>/<variant>.yaml, then loaded)."""
    from foldnlp.config import load_config

    raw = {
        "name": f"bench-{variant}", "task": "classify", "output_dir": str(work / "outputs"),
        "data": {"train_csv": str(data["train"]), "test_csv": str(data["test"])},
        "folds": {"n_folds": args.folds, "seed": SEED, "folds_dir": str(work / "folds")},
        "model": {"name_or_path": args.model, "dropout": DROPOUT, "freeze_word_embeddings": True},
        "features": {"max_len": args.max_len, "doc_stride": 64},
        "train": {"epochs": args.epochs, "lr": args.lr, "head_lr": 1e-3, "batch_size": args.batch_size,
                  "evals_per_epoch": 1, "eval_start_epoch": 0.0, "precision": "auto"},
        "tracking": {"wandb": "disabled"},
        "classify": {"text_column": "text", "label_columns": ["label"],
                     "truncation": TRUNCATION.get(variant, "head_tail"), "tail_tokens": args.tail_tokens,
                     "metric": "accuracy"},
    }
    path = work / f"{variant}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_config(path)


def make_fold_file(cfg) -> Path:
    """foldnlp's fold file of the sample (folds_dir/<scheme>.csv: id, fold); a stale one of this work dir (another
    sample) is replaced."""
    from foldnlp import artifacts
    from foldnlp.steps.make_folds import make_folds

    artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme).unlink(missing_ok=True)
    path, _summary = make_folds(cfg)
    return path


class _InferLog(logging.Handler):
    """Keeps infer()'s per-fold summary (windows, examples, seconds of the forward passes)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.summary = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("fold %d: %d windows of %d examples in %.1f s"):
            self.summary = record.args


@contextlib.contextmanager
def _capture_infer_log():
    logger, handler = logging.getLogger("foldnlp.steps.infer"), _InferLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_foldnlp(cfg, variant: str, data: dict[str, Path], truth: pd.Series) -> Result:
    """train_fold(fold 0), then infer() on the test sample, timed here; accuracy of the written predictions."""
    from accelerate.state import AcceleratorState

    from foldnlp import artifacts
    from foldnlp.steps.infer import infer
    from foldnlp.steps.train_fold import train_fold

    AcceleratorState._reset_state(True)  # accelerate keeps one state per process; every variant starts afresh
    metrics = train_fold(cfg, FOLD, overwrite=True, progress=False)
    run_dir = artifacts.RunPaths.of(cfg.output_dir, cfg.name).root
    with _capture_infer_log() as log:
        started = time.perf_counter()
        record = infer(run_dir, folds=[FOLD], test_csv=data["test"], sample_csv=data["sample_submission"],
                       progress=False)
        infer_s = time.perf_counter() - started
    predictions = pd.read_csv(record.home.test_predictions(record.key, FOLD), dtype=str, keep_default_na=False)
    notes = {"valid_rows": metrics["valid_rows"], f"valid_{metrics['metric']}": round(metrics[metrics["metric"]], 4)}
    history = metrics.get("history") or []
    if history and "elapsed_s" in history[-1]:  # training until the last evaluation began: the steps alone at 1 epoch
        notes["train_s_to_last_eval"] = history[-1]["elapsed_s"]
    if log.summary is not None:
        _fold, windows, examples, seconds = log.summary[:4]
        notes.update(test_windows=windows, forward_s=round(seconds, 2))
    notes["precision"] = record.data.get("precision")
    return Result(VARIANTS[variant], metrics["train_rows"], cfg.train.epochs, metrics["train_seconds"],
                  len(predictions), infer_s, accuracy(predictions, truth), notes)


def accuracy(predictions: pd.DataFrame, truth: pd.Series) -> float:
    """Share of test ids whose predicted label is the true one; every test id must be predicted once."""
    predicted = predictions.set_index("id")["label"]
    if predicted.index.has_duplicates or set(predicted.index) != set(truth.index):
        raise SystemExit(f"predictions cover {predicted.index.nunique()} ids, the test sample {len(truth)}")
    return float((predicted.reindex(truth.index).astype(float).astype(int) == truth).mean())


# ---- transformers.Trainer -----------------------------------------------------------------------------------------
def head_tail_ids(tokenizer, texts: list[str], max_len: int, tail: int) -> list[list[int]]:
    """Token ids of each text as foldnlp's head_tail truncation builds its one window: the tokenizer's special tokens
    around the text's tokens, and when those do not fit in max_len, the first max_len - n_special - tail tokens
    followed by the last tail tokens (n_special: the special tokens the tokenizer adds, 2 for BERT and XLM-R)."""
    encoded = tokenizer(texts, add_special_tokens=True, return_special_tokens_mask=True)
    windows = []
    for ids, special in zip(encoded["input_ids"], encoded["special_tokens_mask"]):
        body = [i for i, s in enumerate(special) if not s]
        start, end = (body[0], body[-1] + 1) if body else (len(ids), len(ids))
        prefix, tokens, suffix = ids[:start], ids[start:end], ids[end:]
        room = max_len - len(prefix) - len(suffix)
        if len(tokens) > room:
            tokens = tokens[: room - tail] + tokens[len(tokens) - tail :]
        windows.append(prefix + tokens + suffix)
    return windows


class _Windows(torch.utils.data.Dataset):
    """Token-id windows (and labels) as the Trainer's data collator takes them."""

    def __init__(self, input_ids: list[list[int]], labels: list[int] | None = None):
        self.input_ids, self.labels = input_ids, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "attention_mask": [1] * len(self.input_ids[i])}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def run_trainer(args, work: Path, train: pd.DataFrame, test: pd.DataFrame, truth: pd.Series,
                foldnlp_windows=None) -> Result:
    """Fine-tune AutoModelForSequenceClassification with transformers.Trainer on the fold-0 training rows, predict
    the test sample; foldnlp_windows (train ids, test ids as foldnlp's head_tail built them), when given, are
    compared with the Trainer's."""
    from accelerate.state import AcceleratorState
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from foldnlp.modeling import load_tokenizer
    from foldnlp.precision import cpu_has_bf16
    from foldnlp.pretrained import resolve_model_path

    AcceleratorState._reset_state(True)
    folder = resolve_model_path(args.model)
    tokenizer = load_tokenizer(folder)
    train_ids = head_tail_ids(tokenizer, train["text"].tolist(), args.max_len, args.tail_tokens)
    test_ids = head_tail_ids(tokenizer, test["text"].tolist(), args.max_len, args.tail_tokens)
    notes = {}
    if foldnlp_windows is not None:
        ours, theirs = train_ids + test_ids, foldnlp_windows[0] + foldnlp_windows[1]
        notes["same_ids_as_foldnlp"] = f"{sum(a == b for a, b in zip(ours, theirs))}/{len(ours)}"

    config = AutoConfig.from_pretrained(folder, num_labels=2)
    for name in [k for k in config.to_dict() if k.endswith("dropout") or k.endswith("dropout_prob")]:
        setattr(config, name, DROPOUT)  # every dropout, as foldnlp's model.dropout sets them
    set_seed(SEED)  # the head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(folder, config=config, use_safetensors=True)
    model.get_input_embeddings().weight.requires_grad_(False)
    training_args = TrainingArguments(
        output_dir=str(work / "trainer"), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=PREDICT_BATCH,
        lr_scheduler_type="linear", warmup_steps=WARMUP_RATIO,  # transformers 5: a float < 1 is a ratio
        weight_decay=WEIGHT_DECAY, bf16=cpu_has_bf16(), use_cpu=True, seed=SEED, eval_strategy="no",
        save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=training_args, train_dataset=_Windows(train_ids, train["label"].tolist()),
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    logits = trainer.predict(_Windows(test_ids)).predictions
    infer_s = time.perf_counter() - started
    predictions = pd.DataFrame({"id": test["id"].to_numpy(), "label": np.asarray(logits).argmax(-1)})
    notes["precision"] = "bf16" if training_args.bf16 else "fp32"
    return Result(VARIANTS["trainer"], len(train), args.epochs, train_s, len(test), infer_s,
                  accuracy(predictions, truth), notes)


def foldnlp_head_tail_windows(cfg, train: pd.DataFrame, data: dict[str, Path]):
    """The token ids of foldnlp's head_tail windows of the Trainer's training rows and of the test sample."""
    from foldnlp.modeling import load_tokenizer
    from foldnlp.tasks import get_task

    task, tokenizer = get_task(cfg), load_tokenizer(cfg.model.name_or_path)
    examples = task.read_train().set_index("id").loc[train["id"]].reset_index()
    test, _ = task.read_test(data["test"], data["sample_submission"])
    test = test.set_index("id").loc[pd.read_csv(data["test"], dtype=str)["id"]].reset_index()
    return tuple([[np.asarray(ids).tolist() for ids in task.windows(tokenizer, frame, with_targets=False).input_ids]
                  for frame in (examples, test)])


# ---- report -------------------------------------------------------------------------------------------------------
def machine() -> dict:
    from foldnlp.precision import cpu_has_bf16

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor() or "unknown", "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "bf16_cpu": cpu_has_bf16(), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__}


HEADER = (("variant", 18, "variant", "s"), ("train rows", 10, "train_rows", "d"), ("epochs", 6, "epochs", "g"),
          ("train s", 8, "train_s", ".1f"), ("train win/s", 11, "train_windows_per_s", ".1f"),
          ("test reviews", 12, "test_reviews", "d"), ("infer s", 8, "infer_s", ".2f"),
          ("infer win/s", 11, "infer_windows_per_s", ".1f"), ("test acc", 8, "test_accuracy", ".4f"))


def print_table(rows: list[dict]) -> None:
    print(" | ".join(f"{title:<{width}}" if key == "variant" else f"{title:>{width}}"
                     for title, width, key, _ in HEADER))
    print("-+-".join("-" * width for _, width, _, _ in HEADER))
    for row in rows:
        print(" | ".join(f"{row[key]:<{width}{fmt}}" if key == "variant" else f"{row[key]:>{width}{fmt}}"
                         for _, width, key, fmt in HEADER))
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in {key for _, _, key, _ in HEADER}}
        if extra:
            print(f"  {row['variant']}: " + ", ".join(f"{k} {v}" for k, v in extra.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path,
                   help="folder with train.csv and test.csv (columns source_file,review_id,rating,label,text; label "
                        "0/1); read in place, never copied into the repository")
    p.add_argument("--work-dir", type=Path,
                   help="folder for the sampled experiment (data/), folds/, outputs/ and trainer/, kept afterwards "
                        "(those are overwritten); default: a temporary folder, removed at the end")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"local Hugging Face model folder, or the bundled sentinel (default {DEFAULT_MODEL})")
    p.add_argument("--train-reviews", type=int, default=1500,
                   help="reviews sampled from train.csv, balanced by label; fold 0 trains on (folds-1)/folds of "
                        "them (default 1500)")
    p.add_argument("--test-reviews", type=int, default=1000,
                   help="reviews sampled from test.csv, balanced by label, predicted and scored (default 1000)")
    p.add_argument("--folds", type=int, default=3,
                   help="folds made of the training sample; fold 0 is trained (default 3)")
    p.add_argument("--max-len", type=int, default=256, help="tokens per window, special tokens included (default 256)")
    p.add_argument("--tail-tokens", type=int, default=128,
                   help="head+tail: tokens kept from the end of a long review; the rest of max_len holds its "
                        "beginning (default 128)")
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs, every variant (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch size, every variant (default 16)")
    p.add_argument("--lr", type=float, default=5e-5,
                   help="backbone learning rate, every variant (foldnlp trains its head at 1e-3, the Trainer at "
                        "this rate) (default 5e-5)")
    p.add_argument("--seed", type=int, default=42,
                   help="seed of the review sampling; folds and training always use seed 42 (default 42)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="variants to run, in this order (default: all)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch.set_num_threads (default: torch's own choice here, "
                        f"{torch.get_num_threads()})")
    p.add_argument("--out", type=Path, help="also write the machine, the settings and the table to this JSON file")
    args = p.parse_args()
    if not 0 < args.tail_tokens < args.max_len - 2:
        p.error(f"--tail-tokens must lie between 1 and --max-len - 3 ({args.max_len - 3})")
    if args.train_reviews < 2 * args.folds or args.test_reviews < 2:
        p.error("--train-reviews must be at least 2 x --folds and --test-reviews at least 2")
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the weight-loading bars

    train = with_ids(sample_balanced(read_split(args.data / "train.csv"), args.train_reviews, args.seed, "train"),
                     "train")
    test = with_ids(sample_balanced(read_split(args.data / "test.csv"), args.test_reviews, args.seed + 1, "test"),
                    "test")
    truth = test.set_index("id")["label"]
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foldnlp-classify-")))
        data = write_experiment(work / "data", train, test)
        configs = {v: experiment_config(work, data, args, v) for v in ("foldnlp-head-tail", "foldnlp-head")}
        fold_path = make_fold_file(configs["foldnlp-head-tail"])
        folds = pd.read_csv(fold_path, dtype=str).set_index("id")["fold"].astype(int)
        fold_train = train[train["id"].map(folds).to_numpy() != FOLD].reset_index(drop=True)
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        settings.update(work_dir=str(work), fold=FOLD, fold_file=fold_path.name, dropout=DROPOUT,
                        warmup_ratio=WARMUP_RATIO, weight_decay=WEIGHT_DECAY, train_seed=SEED,
                        predict_batch_size=PREDICT_BATCH)
        info = machine()
        print(f"{info['cpu']} ({info['cpus']} CPUs), torch {info['torch']} with {info['torch_threads']} threads, "
              f"bf16 CPU support: {info['bf16_cpu']}, transformers {info['transformers']}")
        print(f"{args.model}: {len(train)} training reviews in {args.folds} folds (fold {FOLD}: {len(fold_train)} "
              f"training rows), {len(test)} test reviews; max_len {args.max_len}, tail {args.tail_tokens}, "
              f"{args.epochs:g} epoch(s), batch {args.batch_size}, lr {args.lr:g}; sample seed {args.seed}", flush=True)
        results = []
        for variant in args.variants:
            torch.set_num_threads(args.threads)
            if variant == "trainer":
                windows = foldnlp_head_tail_windows(configs["foldnlp-head-tail"], fold_train, data)
                results.append(run_trainer(args, work, fold_train, test, truth, windows))
            else:
                results.append(run_foldnlp(configs[variant], variant, data, truth))
            print(f"  {results[-1].variant}: done ({results[-1].train_s:.1f} s training)", flush=True)
    rows = [r.row() for r in results]
    print()
    print_table(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": info, "settings": settings, "results": rows}, indent=2) + "\n",
                            encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
