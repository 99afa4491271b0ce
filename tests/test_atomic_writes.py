"""A writer killed with SIGKILL at random moments never leaves a torn artifact: each is the previous version or the
new one (checkpoint folders after recover_dir, which every reader runs), and stale temporaries do not pile up."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from foldnlp import artifacts
from foldnlp.scores import Scores
from helpers import ROOT, kill_seed

N_IDS, N_CHARS, FILE_BYTES = 40, 2000, 1 << 18

# Writes every kind of artifact over and over, each version stamped with its number v throughout.
WRITER = textwrap.dedent(f"""
    import sys
    from pathlib import Path
    import numpy as np
    import pandas as pd
    from foldnlp import artifacts
    from foldnlp.tasks.qa.charscores import char_scores

    out, version = Path(sys.argv[1]), int(sys.argv[2])
    ids = [f"q{{i}}" for i in range({N_IDS})]
    while True:
        version += 1
        def fill(tmp, v=version):
            for name in ("model.safetensors", "config.json", "tokenizer.json"):
                (tmp / name).write_bytes(v.to_bytes(4, "little") * ({FILE_BYTES} // 4))
        artifacts.atomic_write_dir(out / "model", fill)
        artifacts.atomic_write_json(out / "metrics.json", {{"version": version, "history": list(range(20000))}})
        value = [np.full({N_CHARS}, version % 2000, dtype=np.float32)] * {N_IDS}
        artifacts.save_scores(out / "scores.npz", char_scores(ids, value, value))
        artifacts.atomic_write_csv(out / "oof.csv", pd.DataFrame({{"id": ids, "version": version}}))
        print(version, flush=True)
""")


def check_complete(out: Path) -> dict[str, int]:
    """The version of every artifact present, asserting each is whole and consistent within itself."""
    versions = {}
    model = artifacts.recover_dir(out / "model")
    if model.exists():
        blobs = [(model / name).read_bytes() for name in ("model.safetensors", "config.json", "tokenizer.json")]
        assert all(len(b) == FILE_BYTES for b in blobs) and len(set(blobs)) == 1, "torn checkpoint folder"
        stamps = np.frombuffer(blobs[0], dtype="<u4")
        assert (stamps == stamps[0]).all()
        versions["model"] = int(stamps[0])
    if (out / "metrics.json").exists():
        record = json.loads((out / "metrics.json").read_text())
        assert record["history"] == list(range(20000))
        versions["metrics"] = record["version"]
    if (out / "scores.npz").exists():
        scores = artifacts.load_scores(out / "scores.npz")
        assert len(scores) == N_IDS and len(scores.values) == N_IDS * N_CHARS
        assert len(set(scores.values.ravel().tolist())) == 1
        versions["scores"] = int(scores.values[0, 0])
    if (out / "oof.csv").exists():
        frame = pd.read_csv(out / "oof.csv")
        assert len(frame) == N_IDS and frame["version"].nunique() == 1
        versions["oof"] = int(frame["version"].iloc[0])
    return versions


def test_kill_during_saves_leaves_old_or_new_artifacts(tmp_path):
    seed = kill_seed()
    out, rng, version, seen, cut_short = tmp_path / "run", random.Random(seed), 0, [], 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(version)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one full round written: the next kill lands inside later saves
        assert first, proc.stderr.read()
        time.sleep(rng.uniform(0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        written = [int(line) for line in [first, *proc.stdout.read().split()] if str(line).strip()]
        versions = check_complete(out)
        assert set(versions) == {"model", "metrics", "scores", "oof"}
        last = written[-1]  # every artifact is at the last finished round, or the round cut short by the kill
        for name, v in versions.items():
            expected = {last % 2000, (last + 1) % 2000} if name == "scores" else {last, last + 1}  # float16 range
            assert v in expected, (name, v, last, f"KILL_SEED={seed}")
        seen.append(versions)
        version = written[-1] + 1
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        assert len(leftovers) <= 2, leftovers  # at most the temporaries of the save that was cut short
        cut_short += bool(leftovers)
    assert cut_short > 0, f"KILL_SEED={seed}"  # some kills did land inside a save
    assert len({v["model"] for v in seen}) > 1  # and in different rounds


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_artifacts_get_the_mode_the_umask_gives(tmp_path, umask):
    """Temporaries are renamed into place with their mode, so it must be what open() and mkdir() would give the
    target under the umask (0644 / 0755 with the usual 022), not mkstemp's owner-only 0600 / 0700, nor the 0600 of
    the safetensors files a checkpoint's writer makes."""
    out = tmp_path / "run"

    def fill(tmp: Path) -> None:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text("{}")
        (tmp / "run.sh").write_text("#!/bin/sh\n")
        (tmp / "run.sh").chmod(0o700)

    previous = os.umask(umask)
    try:
        artifacts.atomic_write_csv(out / "submission.csv", pd.DataFrame({"id": ["a"], "PredictionString": ["x"]}))
        artifacts.atomic_write_json(out / "metrics.json", {"step": 1})
        artifacts.atomic_write_text(out / "metrics.json", "{}\n")  # replacing a file gives the same mode
        artifacts.save_scores(out / "scores.npz", Scores(np.array(["a"]), np.array([0, 2]),
                                                         np.zeros((2, 2), np.float16), "char", ("start", "end")))
        artifacts.atomic_write_dir(out / "model", fill)
        artifacts.atomic_write_dir(out / "model", fill)  # swapped over an existing folder
    finally:
        os.umask(previous)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert modes == {"run": dir_mode, "run/submission.csv": file_mode, "run/metrics.json": file_mode,
                     "run/scores.npz": file_mode, "run/model": dir_mode, "run/model/model.safetensors": file_mode,
                     "run/model/sub": dir_mode, "run/model/sub/config.json": file_mode,
                     "run/model/run.sh": 0o777 & ~umask}, oct(umask)


def test_a_writer_removes_only_the_temporaries_of_writers_that_are_gone(tmp_path):
    """Two processes may write one artifact at once (two search workers, the ranks of a distributed run): a writer
    must not delete the other's temporary mid-write, only what a dead writer left."""
    target = tmp_path / "best.yaml"
    host = artifacts._HOST
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        temps = {name: tmp_path / f".best.yaml.{writer}.0123456789ab.tmp" for name, writer in [
            ("live", f"{host}.{live.pid}"), ("dead", f"{host}.{dead.pid}"), ("old_format", "fedcba987654"),
            ("other_host_recent", "elsewhere.example.org.1"), ("other_host_old", "elsewhere.example.org.2")]}
        for temp in temps.values():
            temp.write_text("partial")
        day_ago = time.time() - artifacts.FOREIGN_TEMP_AGE_S - 60
        os.utime(temps["other_host_old"], (day_ago, day_ago))
        artifacts.atomic_write_text(target, "lr: 1e-4\n")
        assert target.read_text() == "lr: 1e-4\n"
        assert {name for name, temp in temps.items() if temp.exists()} == {"live", "other_host_recent"}
    finally:
        live.kill()
        live.wait()
    artifacts.atomic_write_text(target, "lr: 2e-4\n")  # its writer gone now, the live one's temp goes too
    assert not temps["live"].exists() and temps["other_host_recent"].exists()
