"""Test outputs named and recorded by the inference settings that made them, and the choice of which to blend.

    <home>/test/<key>/settings.json         the settings record (below); rewritten after each fold, so a fold it
                                            lists is complete
    <home>/test/<key>/fold<k>_scores.npz    a fold's test scores; fold<k>.csv its decoded predictions
    <home>/run.json                         only in an infer.py --out-dir: the run folder whose checkpoints predicted

<home> is the run folder, or the --out-dir given to infer.py (for a run folder one cannot or would rather not write
into). The key is "<test file stem>-<8 hex digits>": the digits hash what decides the scores, namely the test file's
content (sha256), the experiment's config with the inference overrides applied (runtime sections left out, as in
the provenance hash) and the resolved precision. What does not change the scores is recorded, not hashed: the test
file's path, batch and chunk sizes, the device, and the folds (folds predicted in separate calls with the same
settings fill one folder). So the same settings always land in the same folder, and other settings or another test
file never replace earlier outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from foldnlp import artifacts
from foldnlp.config import ExperimentConfig, value_at
from foldnlp.errors import InputError
from foldnlp.provenance import config_sha256, differences, file_sha256, training_config

log = logging.getLogger(__name__)

# "<stem>-<8 hex>": what `RUN@KEY` names on ensemble.py's command line.
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]+-[0-9a-f]{8}")


@dataclass(frozen=True)
class Record:
    """The settings record of one test-outputs folder."""

    home: artifacts.RunPaths  # the folder that holds test/<key>/
    data: dict  # settings.json

    @property
    def key(self) -> str:
        return self.data["key"]

    @property
    def folds(self) -> list[int]:
        return self.data["folds"]

    @property
    def test_csv(self) -> str:
        return self.data["test_csv"]["path"]

    @property
    def test_sha256(self) -> str:
        return self.data["test_csv"]["sha256"]

    @property
    def written_at(self) -> str:
        return self.data["written_at"]

    @property
    def label(self) -> str:
        """How ensemble.py's --experiments names these outputs."""
        return f"{self.home.root}@{self.key}"

    def describe(self) -> str:
        """One line: what made these outputs."""
        window = ", ".join(f"{key} {value}" for key, value in self.data["window"].items())
        changed = f"changed: {'; '.join(self.data['changed'])}" if self.data["changed"] else "as trained"
        return (f"{self.label}: folds {self.folds}, {self.data['precision']}, {window} ({changed}); made from "
                f"{self.test_csv} (sha256 {self.test_sha256[:12]}) at {self.written_at[:19].replace('T', ' ')} UTC")

    def summary(self) -> str:
        """A short listing entry, for messages."""
        return f"{self.key} (made from {self.test_csv}, sha256 {self.test_sha256[:12]}, folds {self.folds})"


def settings_key(test_csv: str | Path, identity: dict) -> str:
    """'<test file stem>-<8 hex>': the stem makes it readable, the hash of `identity` makes it exact."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(test_csv).stem).strip("._-")[:40] or "test"
    return f"{stem}-{hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]}"


def new_settings(run_dir: Path, test_csv: str | Path, sample_csv: str | Path, cfg: ExperimentConfig,
                 trained: ExperimentConfig, precision: str, window_keys: list[str], runtime: dict) -> dict:
    """The settings record of an inference about to run (no folds yet).

    cfg: the run's config with the inference overrides applied; trained: without them (the record says what the
    overrides changed); precision: resolved (fp32, bf16, fp16); window_keys: the config keys shown as the window
    settings (features.max_len, features.doc_stride and the task's truncation key); runtime: how it executes
    (recorded, not hashed).
    """
    test_sha = file_sha256(test_csv)
    identity = {"test_sha256": test_sha, "config_sha256": config_sha256(cfg), "precision": precision}
    return {"key": settings_key(test_csv, identity), "run_dir": str(Path(run_dir).resolve()),
            "test_csv": {"path": str(test_csv), "sha256": test_sha}, "sample_submission": str(sample_csv),
            "precision": precision, "window": {key: value_at(cfg, key) for key in window_keys},
            "changed": differences(training_config(trained), training_config(cfg)),
            "config_sha256": identity["config_sha256"], "folds": [], "runtime": runtime, "written_at": None}


def record_fold(home: artifacts.RunPaths, settings: dict, fold: int) -> Record:
    """Add a finished fold to the folder's record (after its files are written, so a listed fold is complete).
    Folds an earlier call recorded under the same key stay: the key says they were made the same way."""
    path = home.test_record(settings["key"])
    folds = set(read_record(home, settings["key"]).folds) if path.is_file() else set()
    data = {**settings, "folds": sorted(folds | {fold}),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
    artifacts.atomic_write_json(path, data)
    return Record(home, data)


def forget_fold(home: artifacts.RunPaths, fold: int) -> None:
    """Drop a fold's test outputs from every folder here (train_fold.py --overwrite: the checkpoint that made them
    is being replaced). The record goes first, so no reader takes the fold while its files are deleted."""
    for record in records(home):
        if fold in record.folds:
            artifacts.atomic_write_json(home.test_record(record.key),
                                        {**record.data, "folds": [k for k in record.folds if k != fold]})
        home.test_scores(record.key, fold).unlink(missing_ok=True)
        home.test_predictions(record.key, fold).unlink(missing_ok=True)


def read_record(home: artifacts.RunPaths, key: str) -> Record:
    path = home.test_record(key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        Record(home, data).describe()  # every field a reader needs is there
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not a readable settings record ({type(err).__name__}: {err}): delete "
                         f"{path.parent} and run infer.py again") from err
    return Record(home, data)


def records(home: artifacts.RunPaths) -> list[Record]:
    """Every recorded test-outputs folder of home, oldest first."""
    return sorted((read_record(home, key) for key in home.test_keys()), key=lambda r: (r.written_at, r.key))


def out_dir_home(out_dir: Path, run_dir: Path, *, write: bool = True) -> artifacts.RunPaths:
    """infer.py --out-dir as the home of a run's test outputs: run.json names the run; a folder that is another run
    folder, or holds another run's test outputs, is refused (their outputs would mix). write: whether to write
    run.json when it is missing (process 0 of a multi-process launch does; the others only check)."""
    home, run_dir = artifacts.RunPaths(Path(out_dir)), Path(run_dir).resolve()
    if home.root.resolve() == run_dir:
        return home
    if home.config.is_file():
        raise InputError(f"--out-dir {out_dir} is another run folder (it has {home.config.name}): choose a new "
                         f"folder for the test outputs of {run_dir}")
    if home.run_link.is_file():
        linked = linked_run(home)
        if linked.resolve() != run_dir:
            raise InputError(f"--out-dir {out_dir} holds test outputs of {linked} (see {home.run_link}): choose "
                             f"another folder for those of {run_dir}")
    elif write:
        artifacts.atomic_write_json(home.run_link, {"run_dir": str(run_dir)})
    return home


def linked_run(home: artifacts.RunPaths) -> Path:
    """The run folder an infer.py --out-dir predicts with, from its run.json."""
    try:
        return Path(json.loads(home.run_link.read_text(encoding="utf-8"))["run_dir"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{home.run_link}: not a readable run link ({type(err).__name__}: {err}); it should be "
                         '{"run_dir": "/path/to/the/run/folder"}') from err


def locate(folder: Path) -> tuple[Path, artifacts.RunPaths]:
    """(run folder, home of its test outputs) of a folder given to ensemble.py: a run folder is both; a folder
    written by infer.py --out-dir names its run in run.json."""
    home = artifacts.RunPaths(Path(folder))
    if home.config.is_file() or not home.run_link.is_file():
        return home.root, home  # a run folder, or neither (open_run then says it is no trained run)
    run_dir = linked_run(home)
    if not artifacts.RunPaths(run_dir).config.is_file():
        raise InputError(f"{folder} holds test outputs of the run folder {run_dir} (see {home.run_link}), which is "
                         f"not there: put it back, or write its new place into {home.run_link}")
    return run_dir, home


def select(home: artifacts.RunPaths, key: str | None, test_csv: str | Path, test_sha256: str, folds: list[int],
           infer_command: str) -> Record:
    """The test outputs of home to blend for a submission on test_csv (content test_sha256), holding `folds`: the
    folder `key` if given, else the most recent one made from that test file.

    InputError, with what to run, when there are none, or key names outputs of another test file or lacking folds.
    infer_command: the infer.py command line that makes the missing outputs, for the messages.
    """
    found = records(home)
    if key is not None:
        chosen = next((r for r in found if r.key == key), None)
        if chosen is None:
            raise InputError(f"{home.root}@{key}: no test outputs {home.test_dir(key)}; "
                             f"{_listing(home, found)}")
        if chosen.test_sha256 != test_sha256:
            raise InputError(f"{chosen.label} was made from {chosen.test_csv} (sha256 {chosen.test_sha256[:12]}), but "
                             f"the submission is for {test_csv} (sha256 {test_sha256[:12]}): blend outputs of one test "
                             f"file: pass --test-csv {chosen.test_csv}, or make outputs from {test_csv} with "
                             f"`{infer_command}`")
        missing = sorted(set(folds) - set(chosen.folds))
        if missing:
            raise InputError(f"{chosen.label} holds folds {chosen.folds}, not {missing} of the folds {folds} to "
                             f"blend: run `{infer_command} --folds {' '.join(map(str, missing))}` with its settings")
        return chosen
    same_file = [r for r in found if r.test_sha256 == test_sha256]
    complete = [r for r in same_file if set(folds) <= set(r.folds)]
    if not complete:
        what = (f"none made from {test_csv} (sha256 {test_sha256[:12]}) holds every fold of {folds}" if same_file
                else f"none made from {test_csv} (sha256 {test_sha256[:12]})")
        raise InputError(f"{home.root}: no test outputs to blend, {what}; {_listing(home, found)}. Run "
                         f"`{infer_command}`" + (", or pass --test-csv naming the file the outputs above were made "
                                                 "from" if found and not same_file else ""))
    chosen = complete[-1]
    newer = [r.key for r in same_file[same_file.index(chosen) + 1:]]
    if newer:
        log.warning("%s: blending %s, not the newer %s, which lack some of the folds %s", home.root, chosen.key,
                    ", ".join(newer), folds)
    return chosen


def _listing(home: artifacts.RunPaths, found: list[Record]) -> str:
    if found:
        return "it has " + "; ".join(r.summary() for r in found)
    legacy = home.legacy_test_scores()
    if legacy:
        return (f"its {legacy[0].parent}/ holds outputs of an older foldnlp ({legacy[0].name}...), made with "
                "unrecorded settings")
    return f"it has none ({home.root / 'test'} holds no settings record)"
