#!/usr/bin/env bash
# GPU smoke test: one LoRA step (int8 base weights) and one full fine-tuning step of the tiny LLaMA
# on CUDA in bf16, through ruinstruct.train.sft, with tokens/s; prints one JSON object.
#
#   bash bench/gpu_smoke.sh                      # needs a CUDA device
#   SMOKE_DEVICE=cpu bash bench/gpu_smoke.sh     # the same code path on CPU in fp32 (no GPU needed)
#
# SMOKE_STEPS (default 2) optimizer steps per method: the first pays CUDA start-up (context, kernels,
# cuBLAS), so tokens/s is measured on the steps after it; the first step's time is reported too.
# The tiny models are built with `ruinstruct make-tiny` into RUINSTRUCT_TINY_DIR (default
# .cache/tiny) when missing. PYTHON picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
DEVICE=${SMOKE_DEVICE:-cuda}
TINY=${RUINSTRUCT_TINY_DIR:-.cache/tiny}
STEPS=${SMOKE_STEPS:-2}

case "$DEVICE" in
  cuda)
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      echo "gpu_smoke: no CUDA device (torch.cuda.is_available() is false for $PY); SMOKE_DEVICE=cpu runs the code path on CPU" >&2
      exit 1
    fi ;;
  cpu) export CUDA_VISIBLE_DEVICES="" ;;
  *) echo "gpu_smoke: SMOKE_DEVICE must be cuda or cpu, not '$DEVICE'" >&2; exit 2 ;;
esac

if [ ! -f "$TINY/llama/config.json" ]; then
  echo "gpu_smoke: no tiny models in $TINY; building them (ruinstruct make-tiny) ..." >&2
  CLI=$(dirname "$PY")/ruinstruct
  [ -x "$CLI" ] || CLI=ruinstruct
  "$CLI" make-tiny --out "$TINY" >&2
fi

exec "$PY" bench/train.py --smoke --tiny-dir "$TINY" --steps "$STEPS"
