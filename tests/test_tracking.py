"""The default tracking path: wandb offline writes one run per fold inside the fold's folder, with no network."""

from foldnlp.tracking import Tracker


def test_offline_tracker_writes_a_run_with_its_metrics_and_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest disables wandb for every other test
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # the tracker's own run_dir must win
    run_dir = tmp_path / "fold0"
    tracker = Tracker("offline", "foldnlp", "tiny", 0, {"train": {"lr": 1e-4}}, run_dir)
    for step in (1, 2, 3):
        tracker.log({"valid/jaccard": 0.1 * step, "train/loss": 1.0 / step}, step=step)
    tracker.finish({"best_jaccard": 0.3, "best_step": 3})

    (run,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = run.glob("run-*.wandb")  # the run's records (protobuf), what `wandb sync` would upload later
    records = log.read_bytes()
    assert records.startswith(b":W&B")
    assert records.count(b"valid/jaccard") >= 3 and records.count(b"train/loss") >= 3  # one history row per step
    assert records.count(b"train/step") >= 3  # the x-axis, logged with every row (a revert logs steps again)
    assert b"best_jaccard" in records and b"best_step" in records  # the summary
    assert b"0.0001" in records  # the config

def test_disabled_tracker_does_nothing_and_imports_nothing(tmp_path):
    tracker = Tracker("disabled", "foldnlp", "tiny", 0, {}, tmp_path / "fold0")
    tracker.log({"x": 1.0}, step=1)
    tracker.finish({"x": 1.0})
    assert not (tmp_path / "fold0").exists()
