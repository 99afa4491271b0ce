"""Benchmark span segmentation (task: spans): foldnlp's pipeline side by side with the usual Hugging Face way of
doing it (as in the Feedback Prize 2021 / NER notebooks), in one run, on the same documents and the same model.

Documents: --documents synthetic documents of --words words each, drawn at random (with their frequencies) from a
word list, so tokenization is that of real text: --text english takes the words of the repository's README.md,
--text hindi the tokens of the IL-NER fixture (tests/fixtures/il_ner_hindi_sample/*.txt). Each document holds
random spans of four made-up classes (Lead, Claim, Evidence, Rebuttal: 3-60 words each, 0-15 words of O between).
The first --timed-documents of them are the ones timed in 1 and 2.

Model: the tokenizer of --model (default the project's multilingual-e5-small, resolved with
foldnlp.pretrained.resolve_model_path) with a small randomly initialised BERT token classifier (hidden 128, 2 layers,
2 heads, FFN 512, seed 0), so the figures are the pipeline's rather than a big model's; --model-weights real loads
--model's own weights with a fresh head. Both ways use the very same model as foldnlp loads it (SpansTask.load_model:
dropout 0, word embeddings frozen) and the same precision (--precision; auto: bf16 autocast where the CPU has it,
via foldnlp.precision), batch size and threads.

Figures (median of --repeats repetitions that alternate which way runs first; windows are --max-len tokens, special
tokens included, consecutive ones sharing --doc-stride tokens):

1. training windows/s (timed documents): the windows' share of building them plus training steps, i.e. trained
   windows / (build s x trained / built + steps s). foldnlp: SpansTask.windows + training_set + epoch_batches
   (building), then per step foldnlp.batching.collate (length-grouped batches padded to their longest window),
   forward and backward with the task's loss (SpansTask.loss), gradient clipping and AdamW (foldnlp's param_groups).
   Usual: tokenizer(words, is_split_into_words=True, truncation=True, max_length, stride,
   return_overflowing_tokens=True, padding="max_length"), each window's labels aligned with word_ids() in a Python
   loop per token (B-/I- of the word on its first sub-token, the I- form on the others, -100 on special tokens: the
   same targets as spans.label_all_subtokens), random batches of max_len tensors, the model's own loss (labels=),
   clipping and AdamW. --steps timed steps each, after one untimed warm-up step, from the same initial weights.
2. inference windows/s (timed documents): windows -> per-word log-probabilities. foldnlp: SpansTask.windows,
   foldnlp.inference.predict (length-sorted batches), SpansTask.to_scores. Usual: the tokenization above, padded
   batches in window order under inference_mode, softmax, and per-word means over sub-tokens and overlapping windows
   accumulated in a Python loop over each window's word_ids(). Their per-word argmax tags are compared.
3. decoding ms per 1,000 documents (all --documents documents): decode_documents (vectorised) vs the usual Python
   decoding (per document argmax, then a loop over its words: a span starts at B- or at I- of another class and ends
   at O or another class, then each class's minimum length and mean-probability rule), on the same word
   probabilities: noisy truth (log-softmax of 3 x one-hot true tag + N(0, 1) noise, about 1 word in 10 mistagged),
   and also the model's scores of 2; both must give the same spans (the agreement is printed).
4. peak memory (ru_maxrss of a fresh process) of the whole infer path over all --documents documents: foldnlp
   (windows -> predict -> to_scores -> decode_documents) and the usual way (tokenization -> forward loop ->
   per-word aggregation -> Python decoding). Each process first loads the tokenizer, model and documents; its RSS
   then is given, and its peak-RSS mark is reset to it (/proc/self/clear_refs) so that loading's own transient peak
   does not hide the path's; the growth is peak minus that RSS. Also the path's wall time and windows.

    .venv/bin/python bench/spans.py                                                # the full size
    .venv/bin/python bench/spans.py --documents 20 --words 300 --steps 2 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from foldnlp.pretrained import DEFAULT_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Lead", "Claim", "Evidence", "Rebuttal")
SPAN_WORDS, GAP_WORDS = (3, 60), (0, 15)
# Per-class decoding rules (spans.decode.class_rules); the other classes use min_words 2, min_mean_prob 0.3.
CLASS_RULES = ("Evidence:5:0.4", "Lead:4:0.3")
DEFAULT_RULE = {"min_words": 2, "min_mean_prob": 0.3}
SIGNAL, NOISE = 3.0, 1.0  # noisy-truth word scores
LR, HEAD_LR, MAX_GRAD_NORM = 1e-4, 1e-3, 1.0
IGNORE = -100


# ---- documents ----------------------------------------------------------------------------------------------------
def word_pool(text: str) -> list[str]:
    """The words synthetic documents are drawn from (repeats kept, so common words stay common)."""
    if text == "hindi":
        folder = ROOT / "tests" / "fixtures" / "il_ner_hindi_sample"
        lines = [line for path in sorted(folder.glob("*.txt")) for line in path.read_text("utf-8").splitlines()]
        return [line.split("\t")[0] for line in lines if line.strip() and line.split("\t")[0].strip()]
    words = (ROOT / "README.md").read_text("utf-8").split()
    return [w for w in words if re.fullmatch(r"[A-Za-z][A-Za-z'-]*[.,;:]?", w)]


def make_documents(n: int, n_words: int, text: str, seed: int) -> pd.DataFrame:
    """id, text, spans (class, first word, last word inclusive): n documents of n_words words."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(word_pool(text), dtype=object)
    ids, texts, spans = [], [], []
    for i in range(n):
        ids.append(f"d{i:06d}")
        texts.append(" ".join(pool[rng.integers(len(pool), size=n_words)]))
        doc, at = [], int(rng.integers(GAP_WORDS[0], GAP_WORDS[1] + 1))
        while at < n_words:
            last = min(n_words - 1, at + int(rng.integers(SPAN_WORDS[0], SPAN_WORDS[1] + 1)) - 1)
            doc.append((CLASSES[rng.integers(len(CLASSES))], at, last))
            at = last + 1 + int(rng.integers(GAP_WORDS[0], GAP_WORDS[1] + 1))
        spans.append(doc)
    return pd.DataFrame({"id": ids, "text": texts, "spans": spans})


def noisy_truth(examples: pd.DataFrame, seed: int):
    """Word scores of the true tags with noise: log_softmax(SIGNAL x one-hot + N(0, NOISE))."""
    from foldnlp.scores import Scores
    from foldnlp.tasks.spans import data

    rng = np.random.default_rng(seed)
    channels = data.bio_channels(CLASSES)
    arrays = []
    for text, spans in zip(examples["text"], examples["spans"]):
        labels = data.bio_labels(len(text.split()), spans, CLASSES)
        logits = rng.normal(0.0, NOISE, (len(labels), len(channels)))
        logits[np.arange(len(labels)), labels] += SIGNAL
        arrays.append(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    return Scores.from_lists(examples["id"].to_numpy(), arrays, "word", channels)


# ---- task and model -----------------------------------------------------------------------------------------------
def spans_task(max_len: int, doc_stride: int):
    from foldnlp.config import from_dict
    from foldnlp.tasks.spans.task import SpansTask

    cfg = from_dict({"task": "spans", "name": "bench-spans",
                     "features": {"max_len": max_len, "doc_stride": doc_stride},
                     "spans": {"classes": list(CLASSES),
                               "decode": {**DEFAULT_RULE, "class_rules": list(CLASS_RULES)}}})
    return SpansTask(cfg)


def save_model(task, tokenizer, model_path: str, weights: str, folder: Path) -> str:
    """The benchmark's model, as SpansTask.load_model loads it for training, saved (with the tokenizer) to folder."""
    from transformers import BertConfig, BertForTokenClassification

    from foldnlp.tasks.spans import data

    channels = data.bio_channels(CLASSES)
    torch.manual_seed(0)
    if weights == "random":
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=512, max_position_embeddings=max(514, task.cfg.features.max_len + 2),
                            pad_token_id=tokenizer.pad_token_id, num_labels=len(channels),
                            id2label=dict(enumerate(channels)), label2id={c: j for j, c in enumerate(channels)})
        BertForTokenClassification(config).save_pretrained(folder / "init")
        model_path = str(folder / "init")
    model = task.load_model(model_path, task.cfg.model)  # dropout 0, frozen word embeddings, a fresh head if needed
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return str(folder / "model")


def load_saved(task, folder: str):
    """The saved model as foldnlp trains it (the config's dropout and frozen word embeddings applied)."""
    return task.load_model(folder, task.cfg.model)


# ---- the usual way ------------------------------------------------------------------------------------------------
def usual_windows(tokenizer, examples: pd.DataFrame, max_len: int, doc_stride: int, *, with_labels: bool) -> dict:
    """Overflowing windows padded to max_len, their word_ids() and document, and (with_labels) labels per token."""
    words = [text.split() for text in examples["text"]]
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_len, stride=doc_stride,
                    return_overflowing_tokens=True, padding="max_length")
    docs = list(enc["overflow_to_sample_mapping"])
    word_ids = [enc.word_ids(i) for i in range(len(docs))]
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "word_ids": word_ids, "doc": docs}
    if with_labels:
        label2id = {"O": 0, **{f"{p}-{c}": 1 + 2 * k + (p == "I") for k, c in enumerate(CLASSES) for p in "BI"}}
        word_labels = []
        for n, spans in zip(map(len, words), examples["spans"]):
            tags = ["O"] * n
            for cls, first, last in spans:
                tags[first] = "B-" + cls
                for w in range(first + 1, last + 1):
                    tags[w] = "I-" + cls
            word_labels.append(tags)
        labels = []
        for doc, ids in zip(docs, word_ids):
            row, previous = [], None
            for w in ids:
                if w is None:
                    row.append(IGNORE)
                elif w != previous:
                    row.append(label2id[word_labels[doc][w]])
                else:  # a later sub-token of the word: the I- form of its tag
                    tag = word_labels[doc][w]
                    row.append(label2id["I-" + tag[2:]] if tag != "O" else 0)
                previous = w
            labels.append(row)
        out["labels"] = labels
    return out


def usual_word_probs(windows: dict, probs: list[np.ndarray], n_words: list[int], n_channels: int) -> list[np.ndarray]:
    """Per document, (n_words, C) probabilities: the mean over every sub-token of the word in every window."""
    sums = [np.zeros((n, n_channels)) for n in n_words]
    counts = [np.zeros(n) for n in n_words]
    for doc, ids, p in zip(windows["doc"], windows["word_ids"], probs):
        for t, w in enumerate(ids):
            if w is not None:
                sums[doc][w] += p[t]
                counts[doc][w] += 1
    out = []
    for total, count in zip(sums, counts):
        total[count == 0, 0], count[count == 0] = 1.0, 1.0
        out.append(total / count[:, None])
    return out


def usual_decode(ids, word_probs: list[np.ndarray], channels: tuple[str, ...], rules: dict) -> pd.DataFrame:
    """id, class, predictionstring, score of every span, decoded word by word in Python."""
    column = {name: j for j, name in enumerate(channels)}
    rows = []
    for doc_id, probs in zip(ids, word_probs):
        tags = probs.argmax(axis=1).tolist()
        found = []  # (class, first word, last word, summed probability)
        current, start, total = None, 0, 0.0
        for w, tag in enumerate(tags):
            name = channels[tag]
            if name == "O":
                if current is not None:
                    found.append((current, start, w - 1, total))
                current = None
                continue
            cls = name[2:]
            if name[0] == "B" or cls != current:
                if current is not None:
                    found.append((current, start, w - 1, total))
                current, start, total = cls, w, 0.0
            total += probs[w, column["B-" + cls]] + probs[w, column["I-" + cls]]
        if current is not None:
            found.append((current, start, len(tags) - 1, total))
        for cls, first, last, total in found:
            n, rule = last - first + 1, rules[cls]
            if n >= rule.min_words and total / n >= rule.min_mean_prob:
                rows.append((doc_id, cls, " ".join(str(w) for w in range(first, last + 1)), total / n))
    return pd.DataFrame(rows, columns=["id", "class", "predictionstring", "score"])


# ---- 1. training --------------------------------------------------------------------------------------------------
def _optimizer(model, task):
    from foldnlp.config import TrainConfig
    from foldnlp.training import param_groups

    return torch.optim.AdamW(param_groups(model, TrainConfig(lr=LR, head_lr=HEAD_LR), task.head_prefixes), lr=LR)


def _step(model, optimizer, batch, loss_of, precision):
    from foldnlp.precision import autocast

    with autocast(precision, torch.device("cpu")):
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        **({"labels": batch["labels"]} if loss_of is None else {}))
        loss = outputs.loss if loss_of is None else loss_of(outputs, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def train_foldnlp(task, tokenizer, model0, examples, args, precision) -> dict:
    from foldnlp.batching import collate, epoch_batches

    started = time.perf_counter()
    windows = task.windows(tokenizer, examples, with_targets=True)
    data = task.training_set(windows)
    rng = np.random.default_rng(args.seed)
    batches = epoch_batches(data, args.batch_size, rng)
    build_s = time.perf_counter() - started
    model = copy.deepcopy(model0).train()
    optimizer = _optimizer(model, task)
    schedule = [batches[i % len(batches)] for i in range(args.steps + 1)]  # epochs repeat if they are short
    _step(model, optimizer, collate(data, schedule[0], tokenizer.pad_token_id), task.loss, precision)  # warm-up
    trained, tokens = 0, 0
    started = time.perf_counter()
    for batch_idx in schedule[1:]:
        batch = collate(data, batch_idx, tokenizer.pad_token_id)
        _step(model, optimizer, batch, task.loss, precision)
        trained, tokens = trained + len(batch_idx), tokens + batch["input_ids"].numel()
    return {"build_s": build_s, "steps_s": time.perf_counter() - started, "built": len(windows), "trained": trained,
            "padded_tokens_per_window": tokens / trained}


def train_usual(task, tokenizer, model0, examples, args, precision) -> dict:
    started = time.perf_counter()
    windows = usual_windows(tokenizer, examples, args.max_len, args.doc_stride, with_labels=True)
    build_s = time.perf_counter() - started
    model = copy.deepcopy(model0).train()
    optimizer = _optimizer(model, task)
    order = np.random.default_rng(args.seed).permutation(len(windows["input_ids"]))
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    schedule = [batches[i % len(batches)] for i in range(args.steps + 1)]

    def batch_of(idx):
        return {name: torch.tensor([windows[name][i] for i in idx])
                for name in ("input_ids", "attention_mask", "labels")}

    _step(model, optimizer, batch_of(schedule[0]), None, precision)  # warm-up
    trained, tokens = 0, 0
    started = time.perf_counter()
    for idx in schedule[1:]:
        batch = batch_of(idx)
        _step(model, optimizer, batch, None, precision)
        trained, tokens = trained + len(idx), tokens + batch["input_ids"].numel()
    return {"build_s": build_s, "steps_s": time.perf_counter() - started, "built": len(windows["input_ids"]),
            "trained": trained, "padded_tokens_per_window": tokens / trained}


# ---- 2. inference -------------------------------------------------------------------------------------------------
def infer_foldnlp(task, tokenizer, model, examples, batch_size, precision) -> tuple[dict, object]:
    from foldnlp.inference import predict

    t0 = time.perf_counter()
    windows = task.windows(tokenizer, examples, with_targets=False)
    t1 = time.perf_counter()
    outputs = predict(model, windows.input_ids, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                      precision=precision, outputs=task.outputs, progress=False)
    t2 = time.perf_counter()
    scores = task.to_scores(examples, windows, outputs)
    t3 = time.perf_counter()
    return {"windows_s": t1 - t0, "forward_s": t2 - t1, "scores_s": t3 - t2, "windows": len(windows)}, scores


def infer_usual(tokenizer, model, examples, args, precision) -> tuple[dict, list[np.ndarray]]:
    from foldnlp.precision import autocast

    t0 = time.perf_counter()
    windows = usual_windows(tokenizer, examples, args.max_len, args.doc_stride, with_labels=False)
    t1 = time.perf_counter()
    model.eval()
    probs = []
    n = len(windows["input_ids"])
    with torch.inference_mode():
        for lo in range(0, n, args.batch_size):
            ids = torch.tensor(windows["input_ids"][lo : lo + args.batch_size])
            mask = torch.tensor(windows["attention_mask"][lo : lo + args.batch_size])
            with autocast(precision, torch.device("cpu")):
                logits = model(input_ids=ids, attention_mask=mask).logits
            probs.extend(torch.softmax(logits.float(), dim=-1).numpy())
    t2 = time.perf_counter()
    word_probs = usual_word_probs(windows, probs, [len(t.split()) for t in examples["text"]], probs[0].shape[1])
    t3 = time.perf_counter()
    return {"windows_s": t1 - t0, "forward_s": t2 - t1, "scores_s": t3 - t2, "windows": n}, word_probs


# ---- 3. decoding --------------------------------------------------------------------------------------------------
def span_agreement(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict:
    """Spans (id, class, words) in both tables, in either only, and the largest score difference of shared ones."""
    def spans(table):
        return {(str(i), str(c), str(w)): float(x) for i, c, w, x in
                zip(table["id"], table["class"], table["predictionstring"], table["score"])}

    a, b = spans(ours), spans(theirs)
    shared = a.keys() & b.keys()
    diff = max((abs(a[k] - b[k]) for k in shared), default=0.0)
    return {"foldnlp_spans": len(ours), "usual_spans": len(theirs), "same": len(shared),
            "same_all": len(shared) == len(ours) == len(theirs), "max_score_diff": diff}


def decode_both(task, scores) -> tuple[float, float, dict]:
    from foldnlp.tasks.spans.decoding import decode_documents

    rules = task.rules()
    probs = [np.exp(scores.example(i).astype(np.float64)) for i in range(len(scores))]
    t0 = time.perf_counter()
    ours = decode_documents(scores, rules)
    t1 = time.perf_counter()
    theirs = usual_decode(scores.ids, probs, scores.channels, rules)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, span_agreement(ours, theirs)


# ---- 4. peak memory (in a fresh process) --------------------------------------------------------------------------
CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench_spans", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
print(json.dumps(bench.memory_run(json.loads(sys.argv[2]), sys.argv[3])))
"""


def memory_run(settings: dict, way: str) -> dict:
    """The whole infer path over every document, in this (fresh) process: its RSS once the tokenizer, model and
    documents are loaded, and ru_maxrss at the end, the high-water mark having been reset to the RSS of then
    (/proc/self/clear_refs), so loading's own transient peak does not count (MB)."""
    import gc
    import resource

    from foldnlp.modeling import load_tokenizer
    from foldnlp.tasks.spans.decoding import decode_documents

    torch.set_num_threads(settings["threads"])
    task = spans_task(settings["max_len"], settings["doc_stride"])
    tokenizer = load_tokenizer(settings["model_dir"])
    model = load_saved(task, settings["model_dir"])
    examples = make_documents(settings["documents"], settings["words"], settings["text"], settings["seed"])
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = _status_mb("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if way == "foldnlp":
        parts, scores = infer_foldnlp(task, tokenizer, model, examples, settings["batch_size"],
                                      settings["precision"])
        spans = decode_documents(scores, task.rules())
    else:
        args = argparse.Namespace(**settings)
        parts, word_probs = infer_usual(tokenizer, model, examples, args, settings["precision"])
        spans = usual_decode(examples["id"].to_numpy(), word_probs, scores_channels(), task.rules())
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # ru_maxrss also keeps the peak of every thread that exited (the kernel folds it in at exit), so a loading peak
    # survives the reset there; VmHWM is the same high-water mark without that.
    return {"before_mb": before, "peak_mb": _status_mb("VmHWM") if reset else maxrss, "ru_maxrss_mb": maxrss,
            "ru_maxrss_before_mb": maxrss_before, "peak_reset": reset, "seconds": time.perf_counter() - started,
            "windows": parts["windows"], "spans": len(spans)}


def _status_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) / 1024


def scores_channels() -> tuple[str, ...]:
    from foldnlp.tasks.spans import data

    return data.bio_channels(CLASSES)


def measure_memory(settings: dict, way: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).resolve()), json.dumps(settings), way],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"the {way} memory run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- report -------------------------------------------------------------------------------------------------------
def machine() -> dict:
    from foldnlp.precision import cpu_has_bf16

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor() or "unknown", "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "bf16_cpu": cpu_has_bf16(),
            "load_average_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset (on)")}


def median(values) -> float:
    return float(statistics.median(values))


def print_table(rows: list[dict]) -> None:
    width = max(len(r["figure"]) for r in rows)
    print(f"{'figure':<{width}} | {'foldnlp':>10} | {'usual way':>10} | {'ratio':>6}")
    print(f"{'-' * width}-+-{'-' * 10}-+-{'-' * 10}-+-{'-' * 6}")
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['figure']:<{width}} | {r['foldnlp']:>10,.{r['digits']}f} | {r['usual']:>10,.{r['digits']}f} | "
              f"{ratio:>6}")


def row(figure: str, ours: float, theirs: float, *, higher_is_better: bool = True, digits: int = 1,
        ratio: bool = True) -> dict:
    value = (ours / theirs if higher_is_better else theirs / ours) if ratio and ours and theirs else None
    return {"figure": figure, "foldnlp": ours, "usual": theirs, "ratio": value, "digits": digits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--documents", type=int, default=1000,
                   help="synthetic documents: decoding (3) and peak memory (4) use all of them (default 1000)")
    p.add_argument("--timed-documents", type=int, default=200,
                   help="the first this many documents are the ones built, trained on and predicted in 1 and 2 "
                        "(at most --documents; default 200)")
    p.add_argument("--words", type=int, default=1500, help="words per document (default 1500)")
    p.add_argument("--text", choices=("english", "hindi"), default="english",
                   help="word list of the documents: english, the words of README.md; hindi, the tokens of the "
                        "IL-NER fixture (default english)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"local Hugging Face model folder, or the bundled sentinel, whose tokenizer (and with "
                        f"--model-weights real, weights) are used (default {DEFAULT_MODEL})")
    p.add_argument("--model-weights", choices=("random", "real"), default="random",
                   help="random: a random 2-layer BERT (hidden 128, 2 heads) on --model's tokenizer; real: --model's "
                        "own weights with a fresh token-classification head (default random)")
    p.add_argument("--max-len", type=int, default=512,
                   help="tokens per window, special tokens included, both ways (default 512)")
    p.add_argument("--doc-stride", type=int, default=128,
                   help="tokens shared by consecutive windows of a document (foldnlp's features.doc_stride, the "
                        "tokenizer's stride) (default 128)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="windows per training step and per inference forward pass, both ways (default 8)")
    p.add_argument("--steps", type=int, default=10,
                   help="training steps timed per way and repetition, after one untimed warm-up step (default 10)")
    p.add_argument("--repeats", type=int, default=3,
                   help="repetitions of 1-3, alternating which way runs first; the table gives medians (default 3)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="both ways: auto is bf16 autocast on a CPU with native bf16, else fp32 (default auto)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help=f"torch.set_num_threads, here and in the memory processes (default: torch's own choice "
                        f"here, {torch.get_num_threads()})")
    p.add_argument("--seed", type=int, default=0, help="seed of the documents, noise and batch order (default 0)")
    p.add_argument("--skip-memory", action="store_true", help="leave out 4 (the two fresh-process runs)")
    p.add_argument("--out", type=Path, help="also write the machine, the settings, the table and every repetition's "
                                            "figures to this JSON file")
    args = p.parse_args()
    if min(args.documents, args.timed_documents, args.words, args.steps, args.repeats, args.batch_size) < 1:
        p.error("--documents, --timed-documents, --words, --steps, --repeats and --batch-size must be positive")
    args.timed_documents = min(args.timed_documents, args.documents)
    torch.set_num_threads(args.threads)

    from transformers.utils import logging as hf_logging

    from foldnlp.modeling import load_tokenizer
    from foldnlp.precision import resolve_precision
    from foldnlp.pretrained import resolve_model_path

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    task = spans_task(args.max_len, args.doc_stride)
    tokenizer = load_tokenizer(args.model)
    examples = make_documents(args.documents, args.words, args.text, args.seed)
    timed = examples.iloc[: args.timed_documents].reset_index(drop=True)
    task.check_windows(tokenizer, timed)
    info = machine()
    described = ("random BERT (hidden 128, 2 layers, 2 heads)" if args.model_weights == "random"
                 else f"{args.model} weights")
    print(f"{info['cpu']} ({info['cpus']} CPUs, load {info['load_average_1min']}), torch {info['torch']} with "
          f"{info['torch_threads']} threads, {precision}, transformers {info['transformers']}")
    print(f"{described} on the tokenizer of {args.model}; {args.documents} documents of {args.words} {args.text} "
          f"words ({args.timed_documents} timed in 1-2); max_len {args.max_len}, stride {args.doc_stride}, batch "
          f"{args.batch_size}, {args.steps} steps, {args.repeats} repeat(s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="foldnlp-bench-spans-") as tmp:
        model_dir = save_model(task, tokenizer, resolve_model_path(args.model), args.model_weights, Path(tmp))
        model0 = load_saved(task, model_dir)
        noisy = noisy_truth(examples, args.seed + 1)
        runs: dict[str, list[dict]] = {k: [] for k in ("train_f", "train_u", "infer_f", "infer_u", "decode")}
        for r in range(args.repeats):
            ways = ("f", "u") if r % 2 == 0 else ("u", "f")
            for way in ways:
                train = train_foldnlp if way == "f" else train_usual
                runs[f"train_{way}"].append(train(task, tokenizer, model0, timed, args, precision))
            for way in ways:
                if way == "f":
                    parts, model_scores = infer_foldnlp(task, tokenizer, model0, timed, args.batch_size, precision)
                else:
                    parts, usual_probs = infer_usual(tokenizer, model0, timed, args, precision)
                runs[f"infer_{way}"].append(parts)
            ours_s, theirs_s, agreement = decode_both(task, noisy)
            runs["decode"].append({"foldnlp_s": ours_s, "usual_s": theirs_s, "agreement": agreement})
            print(f"  repetition {r + 1}/{args.repeats} done", flush=True)
        _, _, model_agreement = decode_both(task, model_scores)
        tags_f = np.concatenate([model_scores.example(i).argmax(1) for i in range(len(model_scores))])
        tags_u = np.concatenate([p.argmax(1) for p in usual_probs])
        memory = {}
        if not args.skip_memory:
            settings = {"model_dir": model_dir, "threads": args.threads, "max_len": args.max_len,
                        "doc_stride": args.doc_stride, "batch_size": args.batch_size, "precision": precision,
                        "documents": args.documents, "words": args.words, "text": args.text, "seed": args.seed}
            for way in ("foldnlp", "usual"):
                memory[way] = measure_memory(settings, way)
                print(f"  memory run ({way}) done", flush=True)

    def training_rate(run):
        return run["trained"] / (run["build_s"] * run["trained"] / run["built"] + run["steps_s"])

    def med(key, fn):
        return median(fn(x) for x in runs[key])

    rows = [
        row("training windows/s (building + steps)", med("train_f", training_rate), med("train_u", training_rate)),
        row("  building windows + labels, windows/s", med("train_f", lambda x: x["built"] / x["build_s"]),
            med("train_u", lambda x: x["built"] / x["build_s"])),
        row("  training steps, windows/s", med("train_f", lambda x: x["trained"] / x["steps_s"]),
            med("train_u", lambda x: x["trained"] / x["steps_s"])),
        row("inference windows/s (windows -> word scores)",
            med("infer_f", lambda x: x["windows"] / (x["windows_s"] + x["forward_s"] + x["scores_s"])),
            med("infer_u", lambda x: x["windows"] / (x["windows_s"] + x["forward_s"] + x["scores_s"]))),
    ]
    for label, key in (("building windows", "windows_s"), ("forward passes", "forward_s"),
                       ("per-word scores", "scores_s")):
        rows.append(row(f"  {label}, windows/s", med("infer_f", lambda x, k=key: x["windows"] / x[k]),
                        med("infer_u", lambda x, k=key: x["windows"] / x[k])))
    per_1000 = 1000 * 1000 / args.documents
    rows.append(row("decoding, ms per 1,000 documents", med("decode", lambda x: x["foldnlp_s"]) * per_1000,
                    med("decode", lambda x: x["usual_s"]) * per_1000, higher_is_better=False))
    windows_f, windows_u = runs["train_f"][0]["built"], runs["train_u"][0]["built"]
    rows.append(row(f"windows of the {args.timed_documents} timed documents", windows_f, windows_u, digits=0,
                    ratio=False))
    rows.append(row("padded tokens per trained window", med("train_f", lambda x: x["padded_tokens_per_window"]),
                    med("train_u", lambda x: x["padded_tokens_per_window"]), digits=0, ratio=False))
    if memory:
        f, u = memory["foldnlp"], memory["usual"]
        rows += [row(f"peak RSS MB, infer path of {args.documents} documents", f["peak_mb"], u["peak_mb"],
                     higher_is_better=False, digits=0),
                 row("  RSS MB before it (tokenizer, model, documents)", f["before_mb"], u["before_mb"], digits=0,
                     ratio=False),
                 row("  growth over it, MB", f["peak_mb"] - f["before_mb"], u["peak_mb"] - u["before_mb"],
                     higher_is_better=False, digits=0),
                 row("  its wall s", f["seconds"], u["seconds"], higher_is_better=False),
                 row(f"  windows of the {args.documents} documents", f["windows"], u["windows"], digits=0,
                     ratio=False)]
    agreement = runs["decode"][-1]["agreement"]
    if memory and not all(m["peak_reset"] for m in memory.values()):
        print("note: /proc/self/clear_refs could not reset the peak RSS: the peaks include loading the model")
    print()
    print_table(rows)
    print("ratio: how many times faster (or smaller) foldnlp is")
    print(f"decoding agreement on noisy truth ({args.documents} documents): {agreement['same']} spans the same of "
          f"{agreement['foldnlp_spans']} (foldnlp) / {agreement['usual_spans']} (usual), largest score difference "
          f"{agreement['max_score_diff']:.2g}; on the model's scores of 2: {model_agreement['same']} of "
          f"{model_agreement['foldnlp_spans']} / {model_agreement['usual_spans']}")
    print(f"per-word argmax tags of 2, foldnlp vs usual: {np.mean(tags_f == tags_u):.4f} agree (near-tie tags flip; "
          "foldnlp's last window ends the document, the tokenizer's holds the remainder; scores are stored as "
          "float16)")
    if args.out:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        settings.update(precision_resolved=precision, classes=list(CLASSES), class_rules=list(CLASS_RULES),
                        default_rule=DEFAULT_RULE, lr=LR, head_lr=HEAD_LR, noisy_truth={"signal": SIGNAL,
                                                                                        "noise": NOISE})
        result = {"machine": info, "settings": settings,
                  "table": [{k: v for k, v in r.items() if k != "digits"} for r in rows],
                  "decoding_agreement": {"noisy_truth": agreement, "model_scores": model_agreement},
                  "tag_agreement": float(np.mean(tags_f == tags_u)), "repetitions": runs, "memory": memory}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
