#!/usr/bin/env bash
# On a CUDA machine: train one fold of the QA default (configs/default.yaml: the bundled data and model, as run.sh
# prepares them) with fp16, with bf16, and with DDP over every GPU present (torchrun, precision auto, the same global
# batch), time the fold's test inference on this GPU and record it for `python -m foldnlp.kaggle budget --device KIND`
# (bench/measured_gpus.json, keyed by GPU kind), then print windows/s, peak memory and the fold's CV in one table.
#
#   bash bench/gpu_check.sh [--epochs 1] [--fold 0] [--config configs/default.yaml] [--out-dir outputs/gpu_check]
#                           [--max-train-examples N] [--no-record] [--set KEY=VALUE ...]
#
#   --epochs N               train.epochs of every run (default 1: a short check, not the recipe's 2)
#   --fold K                 the fold every run trains (default 0)
#   --config PATH            the experiment (default configs/default.yaml)
#   --out-dir PATH           output_dir of the runs (default outputs/gpu_check); logs in PATH/logs/
#   --max-train-examples N   data.max_train_examples: fewer training rows, for a quicker check
#   --no-record              time the inference but leave bench/measured_gpus.json as it is
#   --set KEY=VALUE          any other config override, for every run (repeatable)
#
# PYTHON (default .venv/bin/python, as `bash run.sh` sets up; torch must be the CUDA build of the pinned version)
# runs everything. Without a CUDA GPU it stops at once with exit status 2. A run that fails is named at the end
# (exit status 1); the others are still reported.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=1 FOLD=0 CONFIG=configs/default.yaml OUT=outputs/gpu_check RECORD=1
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) EPOCHS=$2; shift 2 ;;
    --fold) FOLD=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --out-dir) OUT=$2; shift 2 ;;
    --max-train-examples) SETS+=(--set "data.max_train_examples=$2"); shift 2 ;;
    --no-record) RECORD=0; shift ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see bash bench/gpu_check.sh --help)" >&2; exit 2 ;;
  esac
done
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null; then
  echo "gpu_check.sh: no Python at $PY: run 'bash run.sh test' once to set up .venv, or set PYTHON" >&2
  exit 2
fi

# The GPU first: nothing is trained or written without one.
if ! gpu=$("$PY" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    build = f"the CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
    sys.exit(f"gpu_check.sh: no CUDA GPU: torch {torch.__version__} ({build}) sees none, so there is nothing to "
             "measure here; on a CPU, bench/qa_inference.py measures training and inference windows/s")
major, minor = torch.cuda.get_device_capability(0)
print(torch.cuda.device_count(), int(torch.cuda.is_bf16_supported()), f"{major}.{minor}", torch.cuda.get_device_name(0))
EOF
); then
  exit 2
fi
read -r N_GPUS BF16 CAPABILITY GPU_NAME <<<"$gpu"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
read -r BATCH TEST_CSV < <("$PY" -c "import sys
from foldnlp.config import load_config
sets = [v for f, v in zip(sys.argv[2::2], sys.argv[3::2]) if f == '--set']
c = load_config(sys.argv[1], sets); print(c.train.batch_size, c.data.test_csv)" "$CONFIG" "${SETS[@]}")
echo "gpu_check: $N_GPUS × $GPU_NAME (compute capability $CAPABILITY); $CONFIG fold $FOLD, $EPOCHS epoch(s), runs in $OUT"
mkdir -p "$OUT/logs"
"$PY" make_folds.py --config "$CONFIG" "${SETS[@]}" --quiet

COMMON=(--config "$CONFIG" --fold "$FOLD" --overwrite --set "output_dir=$OUT" --set "train.epochs=$EPOCHS"
        --set tracking.wandb=disabled "${SETS[@]}")
ROWS=()
FAILED=()
train() {  # train LABEL GPUS NAME [--set ...]: one run of the fold, on 1 GPU or under torchrun over GPUS
  local label=$1 gpus=$2 name=$3
  shift 3
  local log="$OUT/logs/$label.log" launcher=("$PY")
  if [ "$label" = ddp ]; then
    launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$gpus")
  fi
  echo "== $label: ${launcher[*]} train_fold.py ... --set name=$name $* (log: $log)"
  if "${launcher[@]}" train_fold.py "${COMMON[@]}" --set "name=$name" "$@" >"$log" 2>&1; then
    grep "^fold $FOLD: best" "$log" | tail -n 1 || true
  else
    echo "   FAILED (exit status $?); the end of $log:"
    tail -n 15 "$log" | sed 's/^/   /'
    FAILED+=("$label")
  fi
  ROWS+=(--run "$label" "$gpus" "$OUT/$name")
}

train fp16 1 gpucheck-fp16 --set train.precision=fp16
if [ "$BF16" = 1 ]; then
  train bf16 1 gpucheck-bf16 --set train.precision=bf16
else
  echo "== bf16: skipped (torch.cuda.is_bf16_supported() is False on this GPU)"
fi
# The same global batch as the single-GPU runs (train.batch_size per process × processes), so the CVs compare.
PER_GPU=$(( BATCH / N_GPUS > 0 ? BATCH / N_GPUS : 1 ))
train ddp "$N_GPUS" "gpucheck-ddp$N_GPUS" --set train.precision=auto --set "train.batch_size=$PER_GPU"

timed=""  # the first run that finished: its fold's checkpoint is timed
for name in gpucheck-fp16 gpucheck-bf16 "gpucheck-ddp$N_GPUS"; do
  if [ -z "$timed" ] && [ -f "$OUT/$name/fold$FOLD/metrics.json" ]; then timed=$name; fi
done
record=()
if [ "$RECORD" = 1 ]; then record=(--record); fi
if [ -n "$timed" ]; then
  echo "== inference: fold $FOLD of $timed on $TEST_CSV, timed on this GPU"
  "$PY" -m foldnlp.kaggle budget --experiments "$OUT/$timed" --test-csv "$TEST_CSV" --device cuda \
    --measured-gpus bench/measured_gpus.json "${record[@]}" --quiet || FAILED+=(inference)
else
  echo "== inference: skipped, no run finished"
  FAILED+=(inference)
fi
echo
echo "gpu_check: $N_GPUS × $GPU_NAME, $CONFIG fold $FOLD, $EPOCHS epoch(s)"
"$PY" bench/gpu_check_table.py --fold "$FOLD" "${ROWS[@]}"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "gpu_check: failed: ${FAILED[*]} (logs in $OUT/logs)" >&2
  exit 1
fi
