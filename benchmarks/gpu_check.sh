#!/usr/bin/env bash
# GPU check, for a CUDA machine (about 3 minutes on an H200; < 10 at worst): the GPU
# tests, the engine benchmark on CUDA for ViT-B and ViT-T, everything mode for ViT-B and
# the built-in model's timings. Writes logs and JSON under ${OUT:-gpu_out}/.
# Usage (repository root):  bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
PY="${SEGANY_PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" - <<'PY' | tee -a "$OUT/gpu.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())
print("bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
PY
# The GPU tests (CUDA vs CPU agreement, device errors): only their file, since the
# other test files need napari, which the GPU machine may lack.
timeout 100 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/tests.log"
for model in vit_b vit_t; do
    timeout 120 "$PY" benchmarks/bench_engine.py --model "$model" --device cuda --repeats 5 \
        --json "$OUT/bench_engine_$model.json" 2>&1 | tee "$OUT/bench_engine_$model.log"
done
# Everything mode (embedding included, one untimed warm-up each) and the built-in model.
timeout 150 "$PY" benchmarks/bench_everything.py --model vit_b --size 1024 --device cuda \
    2>&1 | tee "$OUT/bench_everything_vit_b.log"
timeout 90 "$PY" benchmarks/bench_builtin.py --device cuda 2>&1 | tee "$OUT/bench_builtin.log"
echo "gpu_check done: results in $OUT/"
