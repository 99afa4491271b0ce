"""Run a built kernel here as Kaggle would: a /kaggle-like input tree, a fresh virtual environment that installs only
from the bundle's datasets, and no network.

<workdir>/input/<competition>/test.csv, sample_submission.csv   copied from the given files (a test folder: test/)
<workdir>/input/<dataset-slug>/                                 links to the bundle's dataset folders
<workdir>/working/                                              the kernel's output: submission.csv
<workdir>/venv/                                                 a fresh `python -m venv` (pip only)

No network: the kernel runs in a new network namespace (`unshare --net --map-root-user`, nothing but a down
loopback). Where unshare is not permitted (some containers forbid user namespaces), a sitecustomize.py on
PYTHONPATH makes every IPv4/IPv6 socket connect in the kernel and its pip subprocess raise instead; which one was
used is reported. pip configuration is shut out (PIP_CONFIG_FILE=/dev/null, no PIP_* variables), so that no
configured find-links or index can serve a package from outside the bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from foldnlp.errors import InputError
from foldnlp.kaggle import metadata

_BLOCK_SOCKETS = '''"""Installed by foldnlp.kaggle.localrun: the network is off for this process and its children."""
import socket

_connect = socket.socket.connect


def _refuse(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(101, "network is off (foldnlp.kaggle local run)")
    return _connect(self, address)


socket.socket.connect = _refuse
'''
_MARKER = ".foldnlp-local-run"  # only a folder holding it is ever deleted
_PROBE = ("import socket\ntry:\n    socket.create_connection(('pypi.org', 443), timeout=5)\n    print('open')\n"
          "except OSError as err:\n    print(f'blocked ({err})')")


@dataclass(frozen=True)
class LocalRun:
    submission: Path
    isolation: str  # how the network was removed
    network_probe: str  # what a connection attempt to pypi.org gave inside the isolation
    seconds: float  # wall time of the kernel process (install + inference)
    log: str  # the kernel's output (stdout and stderr, interleaved)


@dataclass(frozen=True)
class KernelTree:
    """The /kaggle-like tree of a local run. Every path is absolute: the kernel runs with working/ as its working
    directory, where a path relative to the caller's would name another file."""

    workdir: Path
    input_dir: Path  # KAGGLE_INPUT_DIR: the competition folder and links to the bundle's datasets
    working: Path  # KAGGLE_WORKING_DIR and the kernel's working directory
    script: Path  # the bundle's kernel script

    @property
    def venv_python(self) -> Path:
        return self.workdir / "venv" / "bin" / "python"

    def command(self, prefix: list[str]) -> list[str]:
        """The kernel's command line, run in self.working (prefix: the network isolation)."""
        return [*prefix, str(self.venv_python), str(self.script)]


def run_kernel_locally(bundle: Path, test_csv: Path, sample_csv: Path, workdir: Path, *,
                       python: str = sys.executable, timeout: float | None = None) -> LocalRun:
    tree = make_kernel_tree(bundle, test_csv, sample_csv, workdir)
    subprocess.run([python, "-m", "venv", str(tree.venv_python.parent.parent)], check=True)
    env = _kernel_env(tree.input_dir, tree.working)
    prefix, isolation = _isolation(tree.workdir, env)
    probe = subprocess.run([*prefix, str(tree.venv_python), "-c", _PROBE], env=env, capture_output=True,
                           text=True).stdout.strip()
    if not probe.startswith("blocked"):
        raise RuntimeError(f"the network is still reachable under {isolation}: {probe}")
    started = time.perf_counter()
    result = subprocess.run(tree.command(prefix), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=timeout, cwd=tree.working)
    seconds = time.perf_counter() - started
    log = result.stdout
    if result.returncode != 0:
        raise InputError(f"the kernel failed (exit {result.returncode}) under {isolation}:\n{log[-4000:]}")
    return LocalRun(tree.working / "submission.csv", isolation, probe, seconds, log)


def make_kernel_tree(bundle: Path, test_csv: Path, sample_csv: Path, workdir: Path) -> KernelTree:
    """Check the bundle and build <workdir>/input and <workdir>/working (replacing an earlier local run's tree);
    relative paths are taken from the current directory."""
    bundle, test_csv, sample_csv, workdir = (Path(os.path.abspath(p)) for p in (bundle, test_csv, sample_csv, workdir))
    kernel_dir = bundle / "kernel"
    meta_file = kernel_dir / metadata.KERNEL_METADATA
    if not meta_file.is_file():
        raise InputError(f"--bundle {bundle}: no kernel/{metadata.KERNEL_METADATA} (build the bundle first)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if not test_csv.is_file() and not test_csv.is_dir():
        raise InputError(f"{test_csv}: no such file or folder")
    if not sample_csv.is_file():
        raise InputError(f"{sample_csv}: no such file")
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / _MARKER).is_file():
            raise InputError(f"--workdir {workdir} exists and was not made by a local run; it is replaced whole, so "
                             "choose a new, empty or earlier local-run folder")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / _MARKER).write_text("made by python -m foldnlp.kaggle local-run; replaced by the next one\n")
    input_dir, working = workdir / "input", workdir / "working"
    competition = input_dir / meta["competition_sources"][0]
    competition.mkdir(parents=True)
    if test_csv.is_dir():  # a test that is a folder of documents (Feedback Prize essays) is copied as a folder
        shutil.copytree(test_csv, competition / "test")
    else:
        shutil.copyfile(test_csv, competition / "test.csv")
    shutil.copyfile(sample_csv, competition / "sample_submission.csv")
    for source in meta["dataset_sources"]:
        slug = source.partition("/")[2]
        (input_dir / slug).symlink_to((bundle / "datasets" / slug).resolve(), target_is_directory=True)
    working.mkdir()
    script = kernel_dir / meta["code_file"]
    if not script.is_file():
        raise InputError(f"--bundle {bundle}: no kernel/{meta['code_file']}, the code_file of its "
                         f"{metadata.KERNEL_METADATA} (build the bundle again)")
    return KernelTree(workdir, input_dir, working, script)


def _kernel_env(input_dir: Path, working: Path) -> dict[str, str]:
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PIP_")}
    env.update(KAGGLE_INPUT_DIR=str(input_dir), KAGGLE_WORKING_DIR=str(working), PIP_CONFIG_FILE=os.devnull,
               PIP_NO_CACHE_DIR="1", PYTHONUNBUFFERED="1")
    return env


def _isolation(workdir: Path, env: dict[str, str]) -> tuple[list[str], str]:
    """(command prefix, description): a fresh network namespace where allowed, else blocked sockets."""
    unshare = shutil.which("unshare")
    if unshare:
        prefix = [unshare, "--net", "--map-root-user"]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix, "unshare --net --map-root-user (a new network namespace)"
    blocker = workdir / "no-network"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCK_SOCKETS, encoding="utf-8")
    env["PYTHONPATH"] = str(blocker)
    return [], "sitecustomize.py that makes IPv4/IPv6 socket connects fail (unshare is not permitted here)"
