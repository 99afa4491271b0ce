"""The run-folder layout (the only module that knows it) and atomic writes of every artifact.

outputs/<experiment>/config.yaml              resolved config of the experiment
outputs/<experiment>/fold<k>/model/           best checkpoint: model.safetensors, tokenizer, model config,
                                              foldnlp_config.yaml (the resolved config, beside the weights)
outputs/<experiment>/fold<k>/oof_scores.npz   out-of-fold scores (scores.py: per example, units × channels), with ids
outputs/<experiment>/fold<k>/oof.csv          id, the task's decoded prediction(s) and the truth
outputs/<experiment>/fold<k>/metrics.json     best score, its step, the evaluation history, healing events, provenance
                                              (written last)
outputs/<experiment>/fold<k>/training_state/  resumable state of an unfinished fold (removed when it finishes)
outputs/<experiment>/fold<k>/train.log        the fold's output when python -m foldnlp.folds_parallel trained it
outputs/<experiment>/test/<key>/settings.json        what made these test outputs (test_outputs.py: the test
                                                    file and its sha256, window settings, precision, folds), the
                                                    settings key <key> hashed from them; written after each fold
outputs/<experiment>/test/<key>/fold<k>_scores.npz  test scores, with example ids
outputs/<experiment>/test/<key>/fold<k>.csv         id, the task's decoded prediction(s)
<out-dir>/run.json, <out-dir>/test/<key>/...        infer.py --out-dir: the same test outputs outside the run
                                                    folder; run.json names the run folder that predicted them
outputs/<experiment>/search.db                a hyper-parameter search's study (python -m foldnlp.search; SQLite)
outputs/<experiment>/best.yaml                the search's best settings as a config (name <experiment>-best)
outputs/<experiment>-t<k>/trial.json          in a search trial's run folder: study, trial number, settings, state
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import socket
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp.errors import InputError
from foldnlp.scores import DTYPES, LOGPROB, Scores

CONFIG_BESIDE_WEIGHTS = "foldnlp_config.yaml"


@dataclass(frozen=True)
class RunPaths:
    root: Path  # outputs/<experiment>

    @classmethod
    def of(cls, output_dir: str | Path, experiment: str) -> RunPaths:
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

    def training_state(self, fold: int) -> Path:
        return self.fold_dir(fold) / "training_state"

    def train_log(self, fold: int) -> Path:
        return self.fold_dir(fold) / "train.log"

    # A hyper-parameter search (foldnlp.search) keeps its study and best config in the experiment's folder; each
    # trial is a run folder of its own, whose trial.json says which study and trial it is.
    @property
    def search_db(self) -> Path:
        return self.root / "search.db"

    @property
    def best_config(self) -> Path:
        return self.root / "best.yaml"

    @property
    def trial_record(self) -> Path:
        return self.root / "trial.json"

    # Test outputs live in test/<key>/, one folder per set of inference settings (foldnlp.test_outputs names the
    # key), so that predicting again with other settings or another test file never replaces earlier outputs.
    # `root` is a run folder, or a folder written by infer.py --out-dir (it holds run.json and test/ only).
    def test_dir(self, key: str) -> Path:
        return self.root / "test" / key

    def test_record(self, key: str) -> Path:
        return self.test_dir(key) / "settings.json"

    def test_scores(self, key: str, fold: int) -> Path:
        return self.test_dir(key) / f"fold{fold}_scores.npz"

    def test_predictions(self, key: str, fold: int) -> Path:
        return self.test_dir(key) / f"fold{fold}.csv"

    def test_keys(self) -> list[str]:
        """Keys of the test outputs here whose settings record was written (at least one fold finished)."""
        return sorted(p.parent.name for p in (self.root / "test").glob("*/settings.json"))

    def legacy_test_scores(self) -> list[Path]:
        """Test scores of the layout before settings keys (test/fold<k>_scores.npz, no record of their settings)."""
        return sorted((self.root / "test").glob("fold*_scores.npz"))

    @property
    def run_link(self) -> Path:
        """In a folder written by infer.py --out-dir: which run folder's checkpoints made its test outputs."""
        return self.root / "run.json"

    def trained_folds(self) -> list[int]:
        """Folds whose training finished (their metrics.json is written last)."""
        found = (p.parent.name for p in self.root.glob("fold*/metrics.json"))
        return sorted(int(name[len("fold"):]) for name in found if name[len("fold"):].isdigit())

    def folds_to_use(self, folds: list[int] | None = None) -> list[int]:
        """The folds asked for, else every trained fold. InputError when that leaves none, when a fold is named
        twice, or when a named fold has neither finished training nor a checkpoint (the run folder of a Kaggle
        kernel holds checkpoints only), naming the folds there are."""
        trained = self.trained_folds()
        if folds is None:
            folds = trained
        if not folds:
            raise InputError(f"{self.root} has no trained fold (no fold*/metrics.json): run train_fold.py first")
        repeated = sorted({k for k in folds if list(folds).count(k) > 1})
        if repeated:
            raise InputError(f"--folds {' '.join(map(str, folds))}: fold(s) {', '.join(map(str, repeated))} named "
                             "more than once (each fold counts once in a blend)")
        missing = [k for k in folds if k not in trained and not recover_dir(self.model_dir(k)).is_dir()]
        if missing:
            names, have = ", ".join(map(str, missing)), ", ".join(map(str, trained)) or "none"
            raise InputError(f"{self.root} has no fold {names} (trained folds: {have}): pass --folds with trained "
                             f"ones, or train it first (train_fold.py --fold {missing[0]})")
        return list(folds)


# What save_checkpoint writes; a folder missing any of them was copied or written incompletely.
CHECKPOINT_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                    CONFIG_BESIDE_WEIGHTS)


_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
# Pickle formats: unpickling runs arbitrary code, so a downloaded or shared checkpoint in them is never loaded.
_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_safetensors_weights(folder: str | Path) -> None:
    """Refuse a local model folder whose weights exist only in a pickle format (or not at all)."""
    path = Path(folder)
    if not path.is_dir() or any((path / name).is_file() for name in _SAFE_WEIGHTS):
        return  # not a local folder (a hub name), or safe weights present: from_pretrained then takes only those
    pickled = sorted(p.name for pattern in _PICKLED_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise InputError(f"refusing to load pickled weights {path / pickled[0]}: only safetensors are loaded "
                         "(unpickling can run code). Convert once, in a process you trust: "
                         "AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")
    raise InputError(f"{path}: no model.safetensors (or model.safetensors.index.json) in the model folder")


def checked_model_dir(path: str | Path) -> Path:
    """A fold's checkpoint folder, recovered from an interrupted swap and checked to hold every file."""
    path = recover_dir(path)
    if not path.is_dir():
        raise InputError(f"no checkpoint folder {path}: train the fold first (train_fold.py)")
    check_safetensors_weights(path)
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if missing:
        raise InputError(f"checkpoint {path} is missing {', '.join(missing)}: copy the whole folder again or "
                         "retrain the fold with --overwrite")
    return path


def fold_file(folds_dir: str | Path, scheme: str) -> Path:
    return Path(folds_dir) / f"{scheme}.csv"


# Temporaries are named after their writer (host and process id), so a writer removes only the temps of writers
# that are gone: never those of another live process writing the same artifact.
_HOST = socket.gethostname().replace("/", "_")
FOREIGN_TEMP_AGE_S = 24 * 3600  # another machine's temp this old is a crash's leftover, not a write in progress


def _temp_sibling(path: Path, *, folder: bool = False) -> Path:
    """A new, empty temporary file (or folder) in the target's folder, so the final os.replace stays on one
    filesystem.

    Created with mode 0666 (0777 for a folder) less the umask, as open() and mkdir() would create the target itself:
    the rename keeps the temporary's mode, and tempfile.mkstemp/mkdtemp make owner-only (0600/0700) entries, which
    would leave submissions, checkpoints and Kaggle bundles unreadable to anyone else.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    while True:
        tmp = path.parent / f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def _remove_stale_temps(path: Path) -> None:
    """Delete what a killed writer of `path` left behind (a checkpoint-sized temp folder per crash would fill the
    disk). Several processes may write the same artifact at once (two search workers writing the best settings, the
    ranks of a distributed run), so a temp is stale only when its writer is gone."""
    for temp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not _writer_is_gone(temp, temp.name[len(path.name) + 2:]):
            continue
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)


def _writer_is_gone(temp: Path, writer_and_token: str) -> bool:
    """Whether the writer of `temp` has ended: a process of this machine that no longer runs, or, for another
    machine's temp (a shared filesystem), one untouched for FOREIGN_TEMP_AGE_S. writer_and_token is
    '<host>.<pid>.<token>.tmp', as _temp_sibling names it; a temp named otherwise is an older version's: stale."""
    parts = writer_and_token.rsplit(".", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return True
    host, pid = parts[0], int(parts[1])
    if host != _HOST:
        try:
            return time.time() - temp.stat().st_mtime > FOREIGN_TEMP_AGE_S
        except OSError:  # already gone
            return False
    try:
        os.kill(pid, 0)  # signal 0 checks that the process exists, and sends nothing
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


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

    A folder cannot replace another in one rename, so the old one is first renamed to `<name>.old`. A kill between
    the two renames leaves only `<name>.old`, the previous complete folder, which recover_dir() (run by the next
    write and by every reader) renames back: readers see the old folder or the new one, never a half-written one.
    """
    path = recover_dir(path)
    tmp = _temp_sibling(path, folder=True)
    old = _aside(path)
    try:
        fill(tmp)
        _settle_tree(tmp)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(path: str | Path) -> Path:
    """Finish an interrupted atomic_write_dir: when only `<name>.old` exists, it is the last complete folder."""
    path = Path(path)
    old = _aside(path)
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    return path


def _aside(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _settle_tree(folder: Path) -> None:
    """Before a freshly written folder is renamed into place: give every entry the mode open() and mkdir() give
    under the umask (some writers, safetensors among them, create owner-only 0600 files, and the rename would carry
    that into the artifact), and flush every file, so a power cut after the rename cannot leave empty files."""
    mask = _umask()
    for entry in [folder, *folder.rglob("*")]:
        if entry.is_symlink():
            continue
        mode = entry.stat().st_mode
        if stat.S_ISDIR(mode):
            wanted = 0o777 & ~mask
        elif stat.S_ISREG(mode):
            wanted = (0o777 if mode & stat.S_IXUSR else 0o666) & ~mask  # an executable stays executable
            with open(entry, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            continue
        if stat.S_IMODE(mode) != wanted:
            try:
                entry.chmod(wanted)
            except PermissionError:  # a file hard-linked from another owner's run folder keeps its owner's mode
                pass


def _umask() -> int:
    """The process's umask; os.umask can only read it by setting it, so it is set back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_dir(path: str | Path) -> None:
    """Delete a folder written by atomic_write_dir, with any leftover `.old` copy."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(_aside(path), ignore_errors=True)


SCORES_FORMAT = 2  # 1: QA-only files with start/end arrays (foldnlp 0.1 before the task seam); still read


def save_scores(path: str | Path, scores: Scores) -> None:
    with ScoresWriter(path, scores.ids, scores.lengths, scores.unit, scores.channels, scores.kind) as writer:
        writer.write(scores)


class ScoresWriter:
    """Streams a Scores .npz to disk chunk by chunk, so predicting many long texts never holds every example's
    scores in memory.

    The file is np.savez's layout (stored, no pickle; np.load reads it): format (the format version), unit,
    channels, kind, ids, offsets, and values (rows × channels; float16 log-probabilities, float32 predictions)
    written as the chunks come. (Files written before `kind` existed hold log-probabilities.) It is built under a
    temporary name and renamed into place on close(), so a kill leaves the previous file or none.

        with ScoresWriter(path, ids, rows_per_example, unit, channels, kind) as writer:
            for part in parts:           # Scores of the next examples, in the order of ids
                writer.write(part)
    """

    def __init__(self, path: str | Path, ids, lengths, unit: str, channels, kind: str = LOGPROB):
        self.path = Path(path)
        self.unit, self.channels, self.kind = unit, tuple(channels), kind
        self._dtype = np.dtype(DTYPES[kind]).newbyteorder("<")
        # ids as fixed-width unicode (not object arrays) so loading never needs pickle.
        self._ids = np.asarray(ids).astype(str)
        self._offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)
        self._written = 0  # examples written so far
        self._tmp = _temp_sibling(self.path)
        self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_STORED, allowZip64=True)
        header = {"format": np.array(SCORES_FORMAT), "unit": np.array(unit), "channels": np.array(self.channels),
                  "kind": np.array(kind), "ids": self._ids, "offsets": self._offsets}
        for name, array in header.items():
            with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        self._values = self._zip.open("values.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_2_0(self._values, {
            "descr": self._dtype.str, "fortran_order": False, "shape": (int(self._offsets[-1]), len(self.channels))})

    def write(self, scores: Scores) -> None:
        lo, hi = self._written, self._written + len(scores)
        if (scores.unit, scores.channels, scores.kind) != (self.unit, self.channels, self.kind):
            raise ValueError(f"{self.path}: {scores.kind} scores per {scores.unit} × {scores.channels}, file declared "
                             f"{self.kind} scores per {self.unit} × {self.channels}")
        if not np.array_equal(scores.ids, self._ids[lo:hi]):
            raise ValueError(f"{self.path}: examples must come in the declared order; expected ids "
                             f"{self._ids[lo:lo + 3].tolist()}..., got {scores.ids[:3].tolist()}...")
        if not np.array_equal(scores.lengths, np.diff(self._offsets[lo : hi + 1])):
            raise ValueError(f"{self.path}: {self.unit} counts differ from the declared ones")
        self._values.write(np.ascontiguousarray(scores.values, dtype=self._dtype).tobytes())
        self._written = hi

    def close(self) -> None:
        if self._written != len(self._ids):
            raise ValueError(f"{self.path}: {self._written} of {len(self._ids)} examples written")
        self._values.close()
        self._zip.close()
        with open(self._tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished file (the previous file at `path`, if any, stays)."""
        for handle in (self._values, self._zip):
            try:
                handle.close()
            except (OSError, ValueError):
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ScoresWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def load_scores(path: str | Path) -> Scores:
    """A scores file of the current format, or a format-1 QA file (start/end over characters) as one."""
    with np.load(path, allow_pickle=False) as z:
        if "values" in z.files:
            version = int(z["format"])
            if version != SCORES_FORMAT:
                raise InputError(f"{path}: scores file format {version}, this foldnlp reads {SCORES_FORMAT}: re-run "
                                 "train_fold.py --overwrite (out-of-fold) or infer.py (test) to rewrite it")
            kind = str(z["kind"]) if "kind" in z.files else LOGPROB
            return Scores(z["ids"].astype(str), z["offsets"], z["values"], str(z["unit"]),
                          tuple(z["channels"].astype(str).tolist()), kind)
        if {"ids", "offsets", "start", "end"} <= set(z.files):
            return Scores(z["ids"].astype(str), z["offsets"], np.stack([z["start"], z["end"]], axis=1), "char",
                          ("start", "end"))
    raise InputError(f"{path}: not a foldnlp scores file (no values array): re-run train_fold.py or infer.py")
