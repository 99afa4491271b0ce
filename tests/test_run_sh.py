"""run.sh's main job, with .venv's python and pip replaced by stubs that record their arguments: which commands it
runs and with which flags (the commands themselves are tested elsewhere)."""

import os
import shutil
import subprocess

from helpers import ROOT

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$(dirname "$0")/../../calls.log"
if [ "${1:-}" = "-c" ]; then echo "3 outputs/default input/test.csv"; fi
"""


def run_main_job(tmp_path, answers: bool = True, **env) -> list[str]:
    """The commands run.sh runs; answers: a test_answers.csv sits beside the stub config's input/test.csv."""
    tmp_path.mkdir(exist_ok=True)
    shutil.copy(ROOT / "run.sh", tmp_path / "run.sh")
    (tmp_path / "input").mkdir()
    if answers:
        (tmp_path / "input" / "test_answers.csv").write_text("id,answer_text\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "pip"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    result = subprocess.run(["bash", "run.sh"], cwd=tmp_path, env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "calls.log").read_text().splitlines()


def test_the_main_job_resumes_by_default_and_retrains_only_when_asked(tmp_path):
    calls = [c for c in run_main_job(tmp_path) if not c.startswith("pip")]
    assert calls[0] == "python make_folds.py --config configs/default.yaml"
    trains = [c for c in calls if "train_fold.py" in c]
    assert trains == [f"python train_fold.py --config configs/default.yaml --fold {k} --resume" for k in range(3)]
    assert calls[-3:] == ["python infer.py --config configs/default.yaml",
                          "python ensemble.py --experiments outputs/default --out outputs/submission.csv",
                          "python score.py --config configs/default.yaml outputs/submission.csv "
                          "input/test_answers.csv"]
    again = tmp_path / "again"
    again.mkdir()
    retrain = [c for c in run_main_job(again, RETRAIN="1") if "train_fold.py" in c]
    assert retrain == [f"python train_fold.py --config configs/default.yaml --fold {k} --overwrite" for k in range(3)]


def test_the_held_out_score_is_printed_only_when_answers_sit_beside_the_test_file(tmp_path):
    assert any(c.startswith("python score.py") for c in run_main_job(tmp_path / "with"))
    assert not any(c.startswith("python score.py") for c in run_main_job(tmp_path / "without", answers=False))
