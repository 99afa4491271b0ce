#!/usr/bin/env bash
# One command for a fresh machine: set up .venv, then
#   bash run.sh         the main job: folds → every fold trained → test inference → ensemble → outputs/submission.csv
#                       → its score on the bundled test answers
#   bash run.sh test    the test suite (fast tests; add pytest arguments after `test`, e.g. `bash run.sh test -m slow`)
# CONFIG=configs/other.yaml bash run.sh   runs another experiment.
# RETRAIN=1 bash run.sh                   retrains every fold (by default finished folds are kept, unfinished resumed).
set -euo pipefail
cd "$(dirname "$0")"
CONFIG=${CONFIG:-configs/default.yaml}
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: an unpinned torch would pull several GB of CUDA packages.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python

if [ "${1:-}" = "test" ]; then
  shift
  exec $py -m pytest -q "$@"
fi

start=$(date +%s)
$py make_folds.py --config "$CONFIG"
read -r n_folds run_dir test_csv < <($py -c "from foldnlp.artifacts import RunPaths; from foldnlp.config import load_config
c = load_config('$CONFIG'); print(c.folds.n_folds, RunPaths.of(c.output_dir, c.name).root, c.data.test_csv)")
# Finished folds are kept and an interrupted one continues from its saved state, so re-running after a crash
# trains only what is missing; RETRAIN=1 bash run.sh trains every fold again from scratch.
if [ "${RETRAIN:-0}" = 1 ]; then train_mode=--overwrite; else train_mode=--resume; fi
for fold in $(seq 0 $((n_folds - 1))); do
  $py train_fold.py --config "$CONFIG" --fold "$fold" "$train_mode"
done
$py infer.py --config "$CONFIG"
$py ensemble.py --experiments "$run_dir" --out outputs/submission.csv
# A bundled test set ships its answers beside it (input/test_answers.csv, input/spans_ner_hi/test_answers.txt):
# print the held-out score after the CV (another test set has none).
answers=$(ls "$(dirname "$test_csv")"/test_answers.* 2>/dev/null | head -n 1 || true)
if [ -n "$answers" ]; then
  $py score.py --config "$CONFIG" outputs/submission.csv "$answers"
fi
echo "main job done in $(( $(date +%s) - start )) s; submission: outputs/submission.csv"
