"""Build the offline submission: three datasets (code, weights, wheels) and the kernel that uses them.

kernels/<name>/datasets/<name>-code/      foldnlp as a wheel
kernels/<name>/datasets/<name>-weights/   foldnlp_bundle.json (experiments, folds, blend weights), and per experiment
                                          <exp>/config.yaml and <exp>/fold<k>/model/ (weights, tokenizer, model
                                          config, foldnlp_config.yaml): nothing else of the run folder
kernels/<name>/datasets/<name>-wheels/    the pinned inference requirements and their dependencies, as wheels
kernels/<name>/kernel/                    kernel-metadata.json and <name>.py (from kernel_template.py)
Each dataset folder also holds its dataset-metadata.json.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

import foldnlp
from foldnlp import artifacts
from foldnlp.config import ExperimentConfig, dump_yaml, from_dict, to_dict
from foldnlp.errors import InputError
from foldnlp.kaggle import metadata, wheels
from foldnlp.kaggle.leaks import find_leaks
from foldnlp.runs import Run, load_run_config, open_run
from foldnlp.tasks import get_task

MANIFEST = "foldnlp_bundle.json"
# Files of a checkpoint folder that inference reads (the tokenizer files of the common tokenizer families; a task's
# own files are its Task.checkpoint_files); an allow-list, so that nothing else a run folder may hold (optimizer
# states, wandb logs, credentials) is uploaded.
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
               "sentencepiece.bpe.model", "spiece.model")
# Keys where transformers (older versions) recorded the folder a model or tokenizer was loaded from: a path of this
# machine, unused when loading, so dropped from the copies.
_SOURCE_KEYS = {"config.json": ("_name_or_path",), "tokenizer_config.json": ("name_or_path",)}
TEMPLATE = Path(__file__).with_name("kernel_template.py")
_SETTINGS_LINE = "SETTINGS: dict = {}\n"


@dataclass
class Options:
    competition: str
    user: str
    name: str
    gpu: bool = True
    # Packages the image provides (no wheels shipped); None: torch on a GPU (the image's CUDA build must stay, a
    # wheel from here would replace it), nothing on a CPU.
    kaggle_has: list[str] | None = None
    requirements: Path = Path("requirements.txt")
    python_version: str = wheels.KAGGLE_PYTHON
    license_name: str = "CC0-1.0"
    precision: str = "auto"  # auto = fp16 on a GPU, bf16 on CPUs that have it
    batch_size: int | None = None
    # "section.key=value" settings applied to each fold's config in the kernel (features.doc_stride=64, ...)
    overrides: list[str] = field(default_factory=list)
    blend_weights: list[float] | None = None


@dataclass(frozen=True)
class DatasetSummary:
    label: str  # the dataset slug, or "<name> (kernel)"
    folder: Path
    files: int
    bytes: int


def default_name(experiments: list[Path]) -> str:
    name = metadata.slugify("foldnlp " + " ".join(Path(e).name for e in experiments))
    return name[:metadata.NAME_MAX].rstrip("-")


def build_bundle(experiments: list[Path], out: Path, options: Options) -> list[DatasetSummary]:
    """Write the bundle to `out` (replacing it whole); returns a summary of its three datasets and the kernel."""
    metadata.check_name(options.name)
    metadata.check_owner(options.user)
    metadata.check_competition(options.competition)
    if out.exists() and any(out.iterdir()) and not (out / "kernel" / metadata.KERNEL_METADATA).is_file():
        raise InputError(f"--out {out} exists and is not a bundle (no kernel/{metadata.KERNEL_METADATA}); the bundle "
                         "replaces its folder whole, so choose a new, empty or earlier bundle folder")
    runs = _open_runs(experiments)
    for run in runs:  # the kernel applies the overrides to every fold: a bad --doc-stride fails here, not on Kaggle
        for fold in run.folds:
            run.fold_config(fold, options.overrides)
    if options.blend_weights is not None and len(options.blend_weights) != len(runs):
        raise InputError(f"--weights: {len(options.blend_weights)} weights for {len(runs)} experiments")
    pins = wheels.read_pins(options.requirements)
    kaggle_has = set(image_packages(options))
    requirements = [spec for name, spec in zip(wheels.INFERENCE_PACKAGES, wheels.inference_pins(pins))
                    if name not in kaggle_has]
    slugs = {kind: metadata.dataset_slug(options.name, kind) for kind in metadata.DATASET_KINDS}
    machine_paths = _machine_paths(runs, out)

    def fill(tmp: Path) -> None:
        folders = {kind: tmp / "datasets" / slug for kind, slug in slugs.items()}
        wheels.build_code_wheel(folders["code"])
        _write_weights(runs, folders["weights"], options.blend_weights, options.overrides)
        wheels.collect_wheels(requirements, pins, folders["wheels"], kaggle_has=kaggle_has,
                              python_version=options.python_version)
        for kind, folder in folders.items():
            artifacts.atomic_write_json(folder / metadata.DATASET_METADATA,
                                        metadata.dataset_metadata(options.user, slugs[kind], options.license_name))
        settings = kernel_settings(options, slugs, requirements)
        _write_kernel(tmp / "kernel", options, [f"{options.user}/{s}" for s in slugs.values()], settings)
        leaks = find_leaks(tmp, machine_paths)
        if leaks:
            raise InputError("the bundle would leak: " + "; ".join(leaks))

    artifacts.atomic_write_dir(out, fill)
    return [_summary(folder.name, folder) for folder in [out / "datasets" / s for s in slugs.values()]] + \
        [_summary(f"{options.name} (kernel)", out / "kernel")]


def image_packages(options: Options) -> list[str]:
    """Canonical names of the packages left to the Kaggle image."""
    chosen = options.kaggle_has if options.kaggle_has is not None else (["torch"] if options.gpu else [])
    return sorted({canonicalize_name(p) for p in chosen})


def kernel_settings(options: Options, slugs: dict[str, str], requirements: list[str]) -> dict:
    """What the kernel script needs, as data: where its inputs are and how to install and run."""
    return {
        "competition": options.competition,
        "datasets": slugs,
        "python": options.python_version,
        "foldnlp": f"foldnlp=={foldnlp.__version__}",
        "requirements": requirements,  # pinned; the rest of the wheels dataset are their dependencies
        "image_packages": image_packages(options),
        "precision": options.precision,
        "batch_size": options.batch_size,
        "overrides": options.overrides,
    }


def render_kernel(settings: dict) -> str:
    """The kernel script: the template with its SETTINGS line replaced by the settings as a JSON literal."""
    template = TEMPLATE.read_text(encoding="utf-8")
    if template.count(_SETTINGS_LINE) != 1:
        raise RuntimeError(f"{TEMPLATE} must hold exactly one line {_SETTINGS_LINE!r}")
    literal = json.dumps(settings, sort_keys=True, ensure_ascii=True)
    return template.replace(_SETTINGS_LINE, f"SETTINGS: dict = json.loads({literal!r})\n")


def portable_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with every absolute path cut to its last component. Inference reads none of them (the kernel
    names the test CSV, and each fold loads from its own folder); the build machine's paths stay on it."""

    def cut(value):
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, str):
            prefix, sep, rest = value.rpartition(":")  # "language:path" entries such as qa.external_squad
            if sep and os.path.isabs(rest):
                return f"{prefix}:{Path(rest).name}"
            if os.path.isabs(value):
                return Path(value).name
        return value

    return from_dict(cut(to_dict(cfg)))


def _open_runs(experiments: list[Path]) -> list[Run]:
    runs = [open_run(root, check_checkpoints=True) for root in experiments]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise InputError(f"--experiments: two run folders share a name ({', '.join(names)}); the weights dataset "
                         "keeps one folder per name")
    return runs


def _write_weights(runs: list[Run], folder: Path, blend_weights: list[float] | None, overrides: list[str]) -> None:
    for run in runs:
        target = artifacts.RunPaths(folder / run.name)
        # With the overrides: the kernel's blend decodes by this config (decoding settings fit on the out-of-fold
        # blend, such as regress.thresholds, reach the kernel this way).
        artifacts.atomic_write_text(target.config, dump_yaml(portable_config(load_run_config(run.paths, overrides))))
        files = (*MODEL_FILES, *get_task(run.cfg).checkpoint_files)
        for fold in run.folds:
            source, dest = run.paths.model_dir(fold), target.model_dir(fold)
            dest.mkdir(parents=True)
            for name in files:
                if name in _SOURCE_KEYS and (source / name).is_file():
                    content = json.loads((source / name).read_text(encoding="utf-8"))
                    artifacts.atomic_write_json(dest / name, {k: v for k, v in content.items()
                                                              if k not in _SOURCE_KEYS[name]})
                elif (source / name).is_file():
                    _link_or_copy(source / name, dest / name)
            artifacts.atomic_write_text(dest / artifacts.CONFIG_BESIDE_WEIGHTS,
                                        dump_yaml(portable_config(run.fold_config(fold))))
    manifest = {"foldnlp": foldnlp.__version__, "blend_weights": blend_weights,
                "experiments": [{"name": r.name, "folds": r.folds} for r in runs]}
    artifacts.atomic_write_json(folder / MANIFEST, manifest)


def _link_or_copy(source: Path, dest: Path) -> None:
    """A hard link where the filesystem allows (checkpoints are hundreds of MB each; runs replace files by rename,
    so the bundle keeps its own version), else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _write_kernel(folder: Path, options: Options, dataset_ids: list[str], settings: dict) -> None:
    code_file = f"{options.name}.py"
    artifacts.atomic_write_text(folder / code_file, render_kernel(settings))
    artifacts.atomic_write_json(folder / metadata.KERNEL_METADATA, metadata.kernel_metadata(
        options.user, options.name, code_file, dataset_ids=dataset_ids, competition=options.competition,
        gpu=options.gpu))


def _machine_paths(runs: list[Run], out: Path) -> list[str]:
    """Absolute paths of this machine that a bundle file could pick up: home, working directory, checkout, run
    folders, model sources and the output folder."""
    paths = {Path.home(), Path.cwd(), Path(__file__).resolve().parents[3], out.resolve().parent}
    for run in runs:
        paths.add(run.paths.root.resolve())
        if os.path.isabs(run.cfg.model.name_or_path):
            paths.add(Path(run.cfg.model.name_or_path))
    return [str(p) for p in paths if p != Path(p.anchor)]


def _summary(label: str, folder: Path) -> DatasetSummary:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return DatasetSummary(label, folder, len(files), sum(p.stat().st_size for p in files))
