"""Inference rates measured on GPUs, kept in a small JSON file keyed by GPU kind ("t4", "a100", "h200"): written by
`budget --device cuda --record` (which bench/gpu_check.sh runs), read by `budget --device KIND` in place of the
assumed rate of that kind.

    {"t4": {"gpu": "Tesla T4", "sustained_tflops": <float>, "precision": "fp16", "experiment": "<run name>",
            "shape": "L=<layers> H=<hidden> I=<intermediate>", "windows": <int>, "windows_per_second": <float>,
            "measured_on": "<YYYY-MM-DD>"}, ...}
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from foldnlp.artifacts import atomic_write_json
from foldnlp.errors import InputError

DEFAULT_PATH = "bench/measured_gpus.json"  # relative to the directory the command runs in (the checkout)
_VENDOR_WORDS = {"nvidia", "tesla", "geforce"}


@dataclass(frozen=True)
class MeasuredGpu:
    gpu: str  # torch.cuda.get_device_name()
    sustained_tflops: float  # the windows' floating-point work (budget.Shape.flops) ÷ seconds of foldnlp's predict
    precision: str  # autocast precision of the timed passes (inference.precision resolved on that GPU)
    experiment: str  # the run whose fold 0 was timed
    shape: str  # its backbone's shape, "L=12 H=384 I=1536"
    windows: int  # windows per timed pass
    windows_per_second: float
    measured_on: str  # ISO date


def gpu_kind(name: str) -> str:
    """The key of a GPU in the file, from its device name: 'Tesla T4' → 't4', 'NVIDIA A100-SXM4-80GB' → 'a100',
    'NVIDIA H200' → 'h200', 'NVIDIA GeForce RTX 4090' → 'rtx4090'."""
    words = [w for w in re.split(r"[\s_]+", name.lower()) if w and w not in _VENDOR_WORDS]
    if not words:
        raise InputError(f"GPU name {name!r} has no model word")
    model = words[0].split("-")[0]
    if model.isalpha() and len(words) > 1:  # a series word (rtx, quadro) before the model number
        model += words[1].split("-")[0]
    return re.sub(r"[^a-z0-9]", "", model)


def read(path: str | Path) -> dict[str, MeasuredGpu]:
    """The measured GPUs of the file (none when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    names = {f.name for f in fields(MeasuredGpu)}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {kind: MeasuredGpu(**{k: v for k, v in entry.items() if k in names}) for kind, entry in raw.items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise InputError(f"{path}: not a file of measured GPUs as `budget --record` writes ({err})") from err


def record(path: str | Path, measured: MeasuredGpu) -> str:
    """Add or replace this GPU kind's entry in the file; returns the kind."""
    kind = gpu_kind(measured.gpu)
    entries = {k: asdict(v) for k, v in read(path).items()}
    entries[kind] = asdict(measured)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, dict(sorted(entries.items())))
    return kind
