"""Span-segmentation test data and runs: a small hand-made Feedback Prize 2021 layout (essays <id>.txt beside a
train.csv of character offsets, a test/ folder and sample_submission.csv beside it) whose classes are made up, so
that a run shows they come from the data; and tiny experiments of task `spans` through the CLIs."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from foldnlp.scores import Scores
from helpers import FIXTURES, run_week

IL_NER = FIXTURES / "il_ner_hindi_sample"
BIO_TRAIN, BIO_TEST = IL_NER / "Hindi-train-300.txt", IL_NER / "Hindi-test-100.txt"
FEEDBACK_TEST = FIXTURES / "feedback_prize_test"
CLASSES = ("Counter", "Support", "Thesis")  # sorted, as training learns them

_TOPICS = "phones school homework sports music cars summer reading teachers parks".split()
_FILLER = ("the students often think about many things when a day at home or in class goes by and friends talk "
           "with each other about the plans they have for later").split()


def _sentence(rng: random.Random, kind: str) -> str:
    topic = rng.choice(_TOPICS)
    body = " ".join(rng.choice(_FILLER) for _ in range(rng.randint(4, 9)))
    return {"Thesis": f"I strongly believe that {topic} are good for us because {body}.",
            "Support": f"For example, {body} and {topic} help.",
            "Counter": f"Some people say {topic} are bad, but {body}.",
            "O": f"Hello, {body}."}[kind]


def essay(rng: random.Random) -> tuple[str, list[tuple[str, int, int]]]:
    """An essay and its discourse elements (class, start, end) in characters: an opening, a thesis, one to three
    supports, sometimes a counter-argument, and a closing line; paragraphs separated by blank lines."""
    kinds = ["O", "Thesis", *["Support"] * rng.randint(1, 3), *(["Counter"] if rng.random() < 0.6 else []), "O"]
    text, elements = "", []
    for k, kind in enumerate(kinds):
        if k:
            text += "\n\n" if rng.random() < 0.5 else " "
        sentence = _sentence(rng, kind)
        if kind != "O":
            elements.append((kind, len(text), len(text) + len(sentence)))
        text += sentence
    return text + "\n", elements


def write_feedback_layout(folder: Path, n_train: int = 12, n_test: int = 3, seed: int = 0) -> dict[str, Path]:
    """<folder>/train.csv, train/<id>.txt, test/<id>.txt and sample_submission.csv (one empty row per test essay),
    as the competition ships them; train.csv writes offsets as Kaggle does ("229.0") and a predictionstring column
    (which the reader ignores)."""
    rng = random.Random(seed)
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "test").mkdir(exist_ok=True)
    rows = []
    for i in range(n_train):
        essay_id = f"E{i:03d}TRAIN"
        text, elements = essay(rng)
        (folder / "train" / f"{essay_id}.txt").write_text(text, encoding="utf-8")
        for cls, start, end in elements:
            words = [k for k, w in enumerate(_word_spans(text)) if w[0] < end and w[1] > start]
            rows.append({"id": essay_id, "discourse_id": f"{len(rows) + 1}.0", "discourse_start": f"{start}.0",
                         "discourse_end": f"{end}.0", "discourse_text": text[start:end], "discourse_type": cls,
                         "predictionstring": " ".join(map(str, words))})
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    test_ids = [f"T{i:03d}TEST" for i in range(n_test)]
    for essay_id in test_ids:
        (folder / "test" / f"{essay_id}.txt").write_text(essay(rng)[0], encoding="utf-8")
    pd.DataFrame({"id": test_ids, "class": "", "predictionstring": ""}).to_csv(folder / "sample_submission.csv",
                                                                              index=False)
    return {"train": folder / "train.csv", "test": folder / "test", "sample": folder / "sample_submission.csv"}


def word_scores(ids, tags: list[list[str]], channels, sure: float | list[list[float]] = 0.9) -> Scores:
    """Log-probabilities per word that make each word's tag the most probable (probability `sure`: one for every
    word, or one per word of each document), the rest shared evenly by the other channels."""
    arrays = []
    for k, doc in enumerate(tags):
        p_tag = np.full(len(doc), sure) if np.isscalar(sure) else np.asarray(sure[k], dtype=float)
        p = np.repeat(((1 - p_tag) / (len(channels) - 1))[:, None], len(channels), axis=1)
        p[np.arange(len(doc)), [channels.index(t) for t in doc]] = p_tag
        arrays.append(np.log(p))
    return Scores.from_lists(np.asarray(ids, dtype=object), arrays, "word", channels)


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def feedback_texts(folder: Path) -> list[str]:
    """Every essay of a layout (train and test), and the fixture's public test essays: a tokenizer's training text."""
    paths = [*sorted(folder.glob("t*/*.txt")), *sorted(FEEDBACK_TEST.glob("*.txt"))]
    return [p.read_text(encoding="utf-8") for p in paths]


def bio_texts() -> list[str]:
    """The IL-NER fixture's tokens, 50 a line: a tokenizer's training text."""
    tokens = [line.split("\t")[0] for path in (BIO_TRAIN, BIO_TEST)
              for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    return [" ".join(tokens[i:i + 50]) for i in range(0, len(tokens), 50)]


@dataclass(frozen=True)
class SpansRun:
    tmp: Path
    config: Path
    overrides: list[str]
    stages: list[tuple[str, int, str, str]]  # (stage, exit status, stdout, stderr)
    submission: Path
    train: Path  # data.train_csv
    test: Path  # the test the run inferred (a BIO file or a folder of essays)
    sample: Path

    @property
    def root(self) -> Path:
        return self.tmp / "outputs" / "s"

    def stage(self, name: str) -> tuple[int, str, str]:
        return next(s[1:] for s in self.stages if s[0] == name)


def tiny_overrides(tmp: Path, model_dir: Path, data: list[str]) -> list[str]:
    return ["name=s", f"output_dir={tmp / 'outputs'}", f"folds.folds_dir={tmp / 'folds'}",
            f"model.name_or_path={model_dir}", *data, "folds.n_folds=2", "features.max_len=64",
            "features.doc_stride=16", "train.epochs=1", "train.batch_size=8", "train.evals_per_epoch=2",
            "train.eval_start_epoch=0", "runtime.save_every_steps=0", "tracking.wandb=disabled"]


def spans_run(tmp: Path, model_dir: Path, data: list[str], section: dict, test: Path, sample: Path,
              train: Path, extra: list[str] = ()) -> SpansRun:
    """make_folds → train_fold (both folds) → infer → ensemble of a tiny `spans` experiment through the CLIs; the
    config file holds `task: spans` and the section, `data`: the data.* --set values, `extra`: --set values that
    replace the tiny ones (features.max_len=1024)."""
    config = tmp / "exp.yaml"
    config.write_text(yaml.safe_dump({"task": "spans", "spans": section}))
    overrides = [*tiny_overrides(tmp, model_dir, data), *extra]
    submission = tmp / "submission.csv"
    stages = run_week(config, overrides, tmp / "outputs" / "s", submission)
    return SpansRun(tmp, config, overrides, stages, submission, train, test, sample)
