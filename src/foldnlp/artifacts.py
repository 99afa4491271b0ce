"""The run-folder layout (the only module that knows it) and atomic writes of every artifact.

outputs/<experiment>/config.yaml              resolved config of the experiment
outputs/<experiment>/fold<k>/model/           best checkpoint: model.safetensors, tokenizer, model config,
                                              foldnlp_config.yaml (the resolved config, beside the weights)
outputs/<experiment>/fold<k>/oof_scores.npz   out-of-fold character scores, with example ids
outputs/<experiment>/fold<k>/oof.csv          id, prediction (decoded best answer), answer_text
outputs/<experiment>/fold<k>/metrics.json     best score, its step, the evaluation history
outputs/<experiment>/test/fold<k>_scores.npz  test character scores, with example ids
outputs/<experiment>/test/fold<k>.csv         id, prediction
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp.tasks.qa.charscores import CharScores

CONFIG_BESIDE_WEIGHTS = "foldnlp_config.yaml"


@dataclass(frozen=True)
class RunPaths:
    root: Path  # outputs/<experiment>

    @classmethod
    def of(cls, output_dir: str | Path, experiment: str) -> "RunPaths":
        return cls(Path(output_dir) / experiment)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold{fold}"

    def model_dir(self, fold: int) -> Path:
        return self.fold_dir(fold) / "model"

    def oof_scores(self, fold: int) -> Path:
        return self.fold_dir(fold) / "oof_scores.npz"

    def oof_predictions(self, fold: int) -> Path:
        return self.fold_dir(fold) / "oof.csv"

    def metrics(self, fold: int) -> Path:
        return self.fold_dir(fold) / "metrics.json"

    def test_scores(self, fold: int) -> Path:
        return self.root / "test" / f"fold{fold}_scores.npz"

    def test_predictions(self, fold: int) -> Path:
        return self.root / "test" / f"fold{fold}.csv"

    def trained_folds(self) -> list[int]:
        """Folds whose training finished (their metrics.json is written last)."""
        found = (p.parent.name for p in self.root.glob("fold*/metrics.json"))
        return sorted(int(name[len("fold"):]) for name in found if name[len("fold"):].isdigit())


def fold_file(folds_dir: str | Path, scheme: str) -> Path:
    return Path(folds_dir) / f"{scheme}.csv"


def _temp_sibling(path: Path) -> Path:
    """A unique temporary name in the target's folder, so the final os.replace stays on one filesystem."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = _temp_sibling(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def atomic_write_dir(path: str | Path, fill) -> None:
    """Call fill(tmp_dir) to write a whole folder, then swap it into place.

    A folder cannot be replaced by one rename while it exists, so the old one is first renamed aside: a crash
    leaves either the old folder, the new one, or the new one beside `<name>.old` (never a half-written folder
    under the final name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(path.name + ".old")
    try:
        fill(tmp)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_char_scores(path: str | Path, scores: CharScores) -> None:
    buffer = io.BytesIO()
    # ids as fixed-width unicode (not object arrays) so loading never needs pickle.
    np.savez(buffer, ids=scores.ids.astype(str), offsets=scores.offsets, start=scores.start, end=scores.end)
    atomic_write_bytes(path, buffer.getvalue())


def load_char_scores(path: str | Path) -> CharScores:
    with np.load(path, allow_pickle=False) as z:
        return CharScores(z["ids"].astype(str), z["offsets"], z["start"], z["end"])
