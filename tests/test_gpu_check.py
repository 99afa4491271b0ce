"""bench/gpu_check.sh where there is no GPU (it must refuse, clearly, before doing anything), its closing table, and
the file of measured GPUs that `kaggle budget --device KIND` reads in place of its assumed rate."""

import json
import os
import subprocess
import sys

import pytest
import torch

from foldnlp.errors import InputError
from foldnlp.kaggle import budget, measured_gpus
from foldnlp.kaggle.measured_gpus import MeasuredGpu
from helpers import ROOT, TEST_CSV, logging_restored

SCRIPT = ROOT / "bench" / "gpu_check.sh"


def measured(gpu: str = "Tesla T4", tflops: float = 26.0) -> MeasuredGpu:
    return MeasuredGpu(gpu=gpu, sustained_tflops=tflops, precision="fp16", experiment="gpucheck-fp16",
                       shape="L=2 H=32 I=64", windows=2048, windows_per_second=1000.0, measured_on="2026-01-02")


def test_gpu_check_is_valid_bash_and_refuses_without_a_gpu(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run its checks")
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT), "--out-dir", str(tmp_path / "out")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "gpu_check.sh: no CUDA GPU: torch" in result.stderr and "sees none" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing trained or written
    unknown = subprocess.run(["bash", str(SCRIPT), "--epoch", "1"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "unknown argument --epoch" in unknown.stderr


def test_gpu_check_table_reads_the_runs(trained_run, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check_table.py"), "--fold", "0",
                             "--run", "bf16", "1", str(trained_run.root), "--run", "ddp", "2", str(tmp_path)],
                            capture_output=True, text=True, check=True)
    header, _, done, failed = result.stdout.strip().splitlines()
    assert "fold 0 jaccard" in header and "windows/s" in header and "peak GiB" in header
    metrics = json.loads((trained_run.root / "fold0" / "metrics.json").read_text())
    cells = [c.strip() for c in done.strip("|").split("|")]
    assert cells[:4] == ["bf16", "1", "auto", "4 × 1"] and cells[6] == f"{metrics['jaccard']:.4f}"
    assert float(cells[4]) > 0 and cells[5] == "-"  # no peak GPU memory on a CPU run
    assert "the run failed" in failed


@pytest.mark.parametrize("name, kind", [("Tesla T4", "t4"), ("Tesla P100-PCIE-16GB", "p100"),
                                        ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA H200", "h200"),
                                        ("NVIDIA L4", "l4"), ("NVIDIA GeForce RTX 4090", "rtx4090"),
                                        ("Tesla V100-SXM2-16GB", "v100")])
def test_gpu_kind_from_device_name(name, kind):
    assert measured_gpus.gpu_kind(name) == kind


def test_measured_gpus_file_round_trip(tmp_path):
    path = tmp_path / "bench" / "measured_gpus.json"
    assert measured_gpus.read(path) == {}  # no file: nothing measured
    assert measured_gpus.record(path, measured()) == "t4"
    assert measured_gpus.record(path, measured("NVIDIA H200", 120.0)) == "h200"
    assert measured_gpus.record(path, measured(tflops=30.0)) == "t4"  # replaces the T4's entry, keeps the H200's
    read = measured_gpus.read(path)
    assert sorted(read) == ["h200", "t4"] and read["t4"].sustained_tflops == 30.0 and read["h200"].gpu == "NVIDIA H200"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a file of measured GPUs"):
        measured_gpus.read(path)


def test_budget_uses_the_measured_rate_of_a_gpu_kind_in_place_of_the_assumed_one(trained_run):
    assert budget.sustained_rate("t4", {}) == budget.DEVICES["t4"].sustained_tflops
    assert budget.sustained_rate("t4", {"t4": measured(tflops=2.5)}) == 2.5
    common = dict(limit_hours=9, expected_rows=None, overhead_minutes=10, overrides=[])
    assumed = budget.plan([trained_run.root], TEST_CSV, device="t4", **common)
    rate = 2 * budget.DEVICES["t4"].sustained_tflops
    used = budget.plan([trained_run.root], TEST_CSV, device="t4", measured={"t4": measured(tflops=rate)}, **common)
    assert "ASSUMED" in assumed and "ASSUMED" not in used
    assert f"at {rate:g} TFLOPS sustained, MEASURED on Tesla T4 (2026-01-02: gpucheck-fp16" in used

    def speed(text: str) -> float:
        return float(next(line for line in text.splitlines() if line.startswith("a ")).split()[7])

    assert speed(used) == pytest.approx(2 * speed(assumed), rel=0.01)
    # A kind the assumed table lacks is a device once measured; unmeasured, it is refused with the valid ones.
    h200 = budget.plan([trained_run.root], TEST_CSV, device="h200", measured={"h200": measured("NVIDIA H200")},
                       **common)
    assert "MEASURED on NVIDIA H200" in h200
    with pytest.raises(InputError, match="--device 'h200': one of cpu, cuda, a100, p100, t4"):
        budget.plan([trained_run.root], TEST_CSV, device="h200", **common)
    with pytest.raises(InputError, match="--record .* needs --device cuda"):
        budget.plan([trained_run.root], TEST_CSV, device="t4", record=ROOT / "never.json", **common)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda measures on this machine's GPU, and torch sees none"):
            budget.plan([trained_run.root], TEST_CSV, device="cuda", **common)


def test_budget_record_writes_the_rate_achieved_on_this_gpu(trained_run, tmp_path, monkeypatch):
    """--device cuda --record with the GPU faked: the timing (2048 windows in 0.5 s) goes into the file under the
    GPU's kind, as sustained TFLOPS = the windows' work ÷ seconds."""
    import numpy as np

    timed_windows = []

    def fake_timed(exp, input_ids, device):
        windows = [input_ids[i % len(input_ids)] for i in range(2048)]
        timed_windows.append(windows)
        return windows, "fp16", 64, 0.5

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(budget, "_timed", fake_timed)
    path = tmp_path / "measured_gpus.json"
    text = budget.plan([trained_run.root], TEST_CSV, device="cuda", limit_hours=9, expected_rows=None,
                       overhead_minutes=10, overrides=[], record=path)
    assert f"recorded in {path} as 't4'" in text and "timed on its windows repeated up to 2048" in text
    entry = measured_gpus.read(path)["t4"]
    work = budget._open(trained_run.root, []).shape.flops(np.array([len(w) for w in timed_windows[-1]]))
    assert entry.sustained_tflops == pytest.approx(work / 0.5 / 1e12, rel=1e-3)
    assert entry.windows == 2048 and entry.windows_per_second == 4096.0 and entry.precision == "fp16"
    again = budget.plan([trained_run.root], TEST_CSV, device="t4", limit_hours=9, expected_rows=None,
                        overhead_minutes=10, overrides=[], measured=measured_gpus.read(path))
    assert "MEASURED on Tesla T4" in again


def test_budget_cli_reads_the_measured_gpus_file(monkeypatch, tmp_path, capsys):
    from foldnlp.kaggle import __main__ as kaggle_cli

    path = tmp_path / "measured.json"
    measured_gpus.record(path, measured())
    seen = {}
    monkeypatch.setattr(budget, "plan", lambda *a, **kw: seen.update(kw) or "planned")
    with logging_restored():
        code = kaggle_cli.main(["budget", "--experiments", str(tmp_path), "--test-csv", str(TEST_CSV), "--device",
                                "T4", "--measured-gpus", str(path)])
    assert code == 0 and "planned" in capsys.readouterr().out
    assert seen["device"] == "t4" and seen["measured"]["t4"].gpu == "Tesla T4" and seen["record"] is None
