"""What must never leave the build machine in a bundle: credentials, tracker keys, and the machine's own paths."""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path

# Files that hold credentials or private run logs, by name (wandb/: offline runs, with the config and host name).
FORBIDDEN_NAMES = frozenset({"kaggle.json", ".netrc", ".env", ".git-credentials", "wandb"})
SECRET_PATTERNS = (
    ("a Kaggle API key", re.compile(rb'"key"\s*:\s*"[0-9a-f]{32}"')),
    ("a credential variable", re.compile(
        rb"(WANDB_API_KEY|KAGGLE_KEY|KAGGLE_API_TOKEN|HF_TOKEN|HUGGING_FACE_HUB_TOKEN)['\"]?\s*[=:]\s*['\"]?"
        rb"[A-Za-z0-9_\-]{16,}")),
    ("a wandb login", re.compile(rb"machine\s+api\.wandb\.ai")),
    ("a wandb API key", re.compile(rb"api_key\s*[=:]\s*['\"]?[0-9a-f]{40}")),
    ("a Hugging Face token", re.compile(rb"\bhf_[A-Za-z0-9]{34}\b")),
)


def find_leaks(root: Path, machine_paths: list[str]) -> list[str]:
    """'<file>: <what>' for every forbidden file name, secret pattern or build-machine path under root.

    Contents are read as bytes: text files whole; a .safetensors file's JSON header (the rest is tensor data);
    foldnlp's own wheel member by member. Third-party wheels are checked by name only: they are downloaded from the
    package index as published, none of their bytes come from this machine."""
    # A path counts where no further name character follows it: /work must not match /workspace.
    needles = [(p, re.compile(re.escape(p.encode()) + rb"(?![\w.-])")) for p in sorted(set(machine_paths))]
    found = []
    for path in sorted(root.rglob("*")):
        where = path.relative_to(root).as_posix()
        if path.name in FORBIDDEN_NAMES:
            found.append(f"{where}: forbidden file")
        if not path.is_file():
            continue
        for label, data in _contents(path):
            found += [f"{where}{label}: {what}" for what in _scan(data, needles)]
    return found


def _contents(path: Path):
    if path.suffix == ".safetensors":
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            yield " (header)", handle.read(length)
    elif path.suffix == ".whl":
        if path.name.startswith("foldnlp-"):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    yield f" ({member})", archive.read(member)
    else:
        yield "", path.read_bytes()


def _scan(data: bytes, needles: list[tuple[str, re.Pattern]]) -> list[str]:
    hits = [what for what, pattern in SECRET_PATTERNS if pattern.search(data)]
    hits += [f"the build machine's path {json.dumps(path)}" for path, pattern in needles if pattern.search(data)]
    return hits
