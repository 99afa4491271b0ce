"""What a run was made from: hashes of its fold file, data files and training config.

Recorded in every fold's metrics.json and training state, so that a resumed fold continues only the run it
belongs to, and ensemble.py refuses to blend experiments trained on different folds or data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from foldnlp.config import RUNTIME_SECTIONS, ExperimentConfig, from_dict, to_dict


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes; of a folder (a test given as a folder of documents), of the relative path and
    sha256 of every file under it, in path order."""
    if Path(path).is_dir():
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        listing = "".join(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n" for p in files)
        return hashlib.sha256(listing.encode("utf-8")).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_config(cfg: ExperimentConfig) -> dict:
    """The config fields that decide what a fold learns, as a plain dict. Runtime settings (RUNTIME_SECTIONS: a
    bigger inference batch, wandb off, state saved more often) and the run's name do not make another experiment."""
    return {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_SECTIONS}


def config_sha256(cfg: ExperimentConfig) -> str:
    return hashlib.sha256(json.dumps(training_config(cfg), sort_keys=True).encode()).hexdigest()


def run_provenance(cfg: ExperimentConfig, fold_file: Path, seed: int, data_files: list[str]) -> dict:
    """Hashes of everything a fold's training read: the task's data_files (paths as given in the config, never
    resolved; the training CSV first)."""
    return {"config_sha256": config_sha256(cfg), "config": training_config(cfg), "seed": seed,
            "fold_file": {"path": str(fold_file), "sha256": file_sha256(fold_file)},
            "data": {path: file_sha256(path) for path in data_files}}


def mismatch(recorded: dict, current: dict) -> str:
    """'' when two run_provenance() records describe the same training, else what differs."""
    parts = []
    if recorded["config_sha256"] != current["config_sha256"]:
        changed_fields = differences(recorded["config"], current["config"], skip_new_defaults=True)
        # Fields added since the run trained, at their defaults, are no change; only they differing is a match.
        if changed_fields or not differences(recorded["config"], current["config"]):
            parts.append("config " + ("; ".join(changed_fields) or "(same fields, different hash)"))
    if recorded["fold_file"]["sha256"] != current["fold_file"]["sha256"]:
        parts.append(f"fold file {recorded['fold_file']['path']} changed")
    changed = [path for path, digest in current["data"].items() if recorded["data"].get(path) != digest]
    if changed:
        parts.append(f"data file(s) {', '.join(changed)} changed")
    return "; ".join(parts)


def differences(recorded: dict, current: dict, skip_new_defaults: bool = False) -> list[str]:
    """'train.lr: 0.0001 → 0.0002' for every config field that differs between two training_config() dicts.

    skip_new_defaults: a field the recorded config lacks (added to foldnlp after that run trained) whose current
    value is its default is no difference: the run trained with that behaviour, which the default keeps."""
    flat_a, flat_b = flatten_config(recorded), flatten_config(current)
    defaults = _defaults(current) if skip_new_defaults and set(flat_b) - set(flat_a) else {}
    return [f"{key}: {flat_a.get(key, '(absent)')} → {flat_b.get(key, '(absent)')}"
            for key in sorted(set(flat_a) | set(flat_b)) if flat_a.get(key) != flat_b.get(key)
            and not (key not in flat_a and key in defaults and defaults[key] == flat_b[key])]


def _defaults(config: dict) -> dict:
    """The flattened training config of a config that sets only the task: every field's default."""
    return flatten_config(training_config(from_dict({"task": config.get("task", "qa")})))


def flatten_config(tree: dict, prefix: str = "") -> dict:
    """{"train.lr": 0.0001, ...}: a nested config dict's leaves under dotted keys."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
