"""Synthetic document tables for the classification and regression tests: reviews whose label a tiny model can
learn (a sentiment word decides it), long enough that head, head+tail and windows read different tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from helpers import run_week

FILLER = ("the film plot actor scene story camera music script moment light city night friend road house water "
          "time place end start way day year character picture sound").split()
POSITIVE, NEGATIVE, MIXED = ("wonderful", "superb", "delightful"), ("awful", "boring", "dreadful"), ("uneven",)
GENRES = ("action", "comedy", "drama")


def review(rng: random.Random, sentiment: str, words: int, at_end: bool) -> str:
    """A review of about `words` filler words with one sentiment word in the first or the last ten words."""
    body = [rng.choice(FILLER) for _ in range(words)]
    cue = rng.choice({"pos": POSITIVE, "neg": NEGATIVE, "mixed": MIXED}[sentiment])
    position = rng.randrange(max(0, words - 10), words) if at_end else rng.randrange(0, min(10, words))
    body.insert(position, cue)
    return " ".join(body)


def classification_table(n: int, seed: int = 0, *, classes=("neg", "pos")) -> pd.DataFrame:
    """id, text, label (strings), genre tags (0/1 per genre) and a grade 1-5 (the number of cue words)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = classes[i % len(classes)]
        words = rng.choice([20, 40, 150, 300])
        text = review(rng, label, words, at_end=rng.random() < 0.5)
        tags = {g: int(rng.random() < 0.4) for g in GENRES}
        for genre, on in tags.items():
            if on:
                text += f" {genre}"
        grade = 1 + i % 5
        text += " " + " ".join(["star"] * grade)
        rows.append({"id": f"doc{i:04d}", "text": text, "label": label, **tags, "grade": str(grade),
                     "score": f"{grade * 0.5 + rng.gauss(0, 0.1):.3f}", "author": f"a{i % 7}"})
    return pd.DataFrame(rows)


def write_competition(folder: Path, n_train: int, n_test: int, seed: int = 0, **kwargs) -> dict[str, Path]:
    """train.csv, test.csv (id, text) and test_answers.csv (the test labels) in folder; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    table = classification_table(n_train + n_test, seed, **kwargs)
    train, test = table.iloc[:n_train], table.iloc[n_train:]
    paths = {"train": folder / "train.csv", "test": folder / "test.csv", "answers": folder / "test_answers.csv"}
    train.to_csv(paths["train"], index=False)
    test[["id", "text"]].to_csv(paths["test"], index=False)
    test.drop(columns=["text"]).to_csv(paths["answers"], index=False)
    return paths


def write_sample(path: Path, ids, columns: dict[str, str]) -> Path:
    """A sample submission: id plus each column filled with its placeholder."""
    pd.DataFrame({"id": list(ids), **{c: [v] * len(ids) for c, v in columns.items()}}).to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class DocumentRun:
    tmp: Path
    config: Path
    overrides: list[str]
    stages: list[tuple[str, int, str, str]]
    submission: Path
    answers: Path
    test: Path
    name: str = "d"

    @property
    def root(self) -> Path:
        return self.tmp / "outputs" / self.name


def document_run(tmp: Path, model_dir: Path, task: str, section: dict, sample_columns: dict,
                 extra: list[str] = (), name: str = "d") -> DocumentRun:
    """A tiny experiment of `task` (its section: `section`) trained, inferred and blended through the CLIs on 40
    synthetic training documents (2 folds) and 12 test ones; extra: more --set values; name: the experiment's, so
    that several share tmp's data and folds (the data is written again, byte for byte the same)."""
    paths = write_competition(tmp / "data", 40, 12)
    test_ids = pd.read_csv(paths["test"], dtype=str)["id"]
    write_sample(paths["test"].with_name("sample_submission.csv"), test_ids, sample_columns)
    config = tmp / "exp.yaml"
    config.write_text(yaml.safe_dump({"task": task, task: {"tail_tokens": 16, **section}}))
    overrides = [f"name={name}", f"output_dir={tmp / 'outputs'}", f"folds.folds_dir={tmp / 'folds'}",
                 f"model.name_or_path={model_dir}", f"data.train_csv={paths['train']}",
                 f"data.test_csv={paths['test']}", "folds.n_folds=2", "features.max_len=48", "features.doc_stride=8",
                 "train.epochs=1", "train.batch_size=8", "train.evals_per_epoch=2", "train.eval_start_epoch=0",
                 "runtime.save_every_steps=0", "tracking.wandb=disabled", *extra]
    submission = tmp / f"submission_{name}.csv"
    stages = run_week(config, overrides, tmp / "outputs" / name, submission)
    return DocumentRun(tmp, config, overrides, stages, submission, paths["answers"], paths["test"], name)
