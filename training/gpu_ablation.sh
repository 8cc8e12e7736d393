#!/usr/bin/env bash
# Recipe experiments for the built-in model on a CUDA machine.
#
# The shipped recipe takes ~80 minutes on 2 CPU cores; on a GPU one run takes minutes,
# so several variants run side by side, each with the full step counts of the CPU
# recipe, and each is then measured on the held-out images (prompts only, as
# `evaluate_builtin --no-everything`). "base" is the shipped recipe itself: its figures
# against the CPU-trained v3 (docs/models.md) tell how far GPU results carry over.
# The shipped file is always trained on the CPU (train_builtin's default).
#
# Usage (repository root):  bash training/gpu_ablation.sh [SECONDS]
#   SECONDS (default 1200): the whole script's budget. Training still going at
#   SECONDS - 75 is stopped (its log is kept; a run past phase 1 has that checkpoint
#   measured as NAME.phase1). Measured on one H200 with the four runs side by side
#   (GPU ~99 % busy): drawing 45 s, phase 0 53 s, phase 1 0.27 s a step, so the
#   four full runs need an estimated 15-18 minutes (phase 2 not reached: its rate is
#   a guess); a 7-minute budget reached step ~1100.
# Writes ${OUT:-gpu_out}/ablation/: NAME.log (training), NAME.json (evaluation) and the
# weights training/out/builtin_NAME.pt. ABLATION_EXTRA appends arguments to every
# training run (e.g. "--encoder-steps 2 --steps 4 --frame-steps 2" for a dry run).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUDGET="${1:-1200}"
END=$((SECONDS + BUDGET))
OUT="${OUT:-gpu_out}/ablation"
mkdir -p "$OUT"
PY="${SEGANY_PYTHON:-python3}"
DEVICE="${ABLATION_DEVICE:-cuda}"
EXTRA="${ABLATION_EXTRA:-}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
VARIANTS=(
    "base|"
    "outward|--box-jitter outward"
    "bgall|--background-all"
    "outward_bgall|--box-jitter outward --background-all"
)
WORKERS=$(($(nproc) > 3 ? $(nproc) - 2 : 1))

if command -v nvidia-smi >/dev/null; then  # is the GPU or the CPU side the limit?
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 \
        >"$OUT/gpu_use.csv" 2>&1 &
    SMI=$!
fi

# Draw the data once, with every core but two; the runs read the cache.
"$PY" -c "
import logging, sys
from training import train_builtin as tb
logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
tb.training_data(tb.parse_args(['--draw-workers', '$WORKERS']))
" 2>&1 | tee "$OUT/draw.log"

train_and_measure() {
    local name="$1" flags="$2" train_left=$((END - 75 - SECONDS))
    # shellcheck disable=SC2086
    timeout --signal=INT "$train_left" "$PY" -m training.train_builtin --device "$DEVICE" \
        --threads 2 --tag "_$name" $flags $EXTRA >"$OUT/$name.log" 2>&1 || {
        echo "$name: training stopped or failed (see $name.log)"
        # Phase 1 done: its checkpoint still says something (as NAME.phase1.json).
        [[ -f "training/out/builtin_${name}_before_frames.pt" ]] &&
            measure "$name.phase1" "training/out/builtin_${name}_before_frames.pt"
        return
    }
    measure "$name" "training/out/builtin_$name.pt"
}

measure() {
    timeout $((END - 10 - SECONDS)) "$PY" -m training.evaluate_builtin --no-everything \
        --device "$DEVICE" --model "$2" >"$OUT/$1.json" 2>"$OUT/$1.eval.err" ||
        echo "$1: evaluation stopped or failed"
}

RUNS=()
for variant in "${VARIANTS[@]}"; do
    train_and_measure "${variant%%|*}" "${variant#*|}" &
    RUNS+=($!)
done
wait "${RUNS[@]}"

"$PY" - "$OUT" "${VARIANTS[@]}" <<'PY'
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
print(f"{'variant':<15}{'click':>7}{'box':>7}{'best3':>7}  train s  last step")
names = [v.split("|")[0] for v in sys.argv[2:]]
for name in names + [n + ".phase1" for n in names if (out / f"{n}.phase1.json").exists()]:
    log = (out / f"{name}.log").read_text() if (out / f"{name}.log").exists() else ""
    steps = re.findall(r"step (\d+)/(\d+)\s+(\d+) s", log)
    last = "/".join(steps[-1][:2]) if steps else "-"
    meta = pathlib.Path(f"training/out/builtin_{name}.json")
    seconds = json.loads(meta.read_text())["total_seconds"] if meta.exists() else "-"
    try:
        s = json.loads((out / f"{name}.json").read_text())
        figures = f"{s['click_iou']:7.3f}{s['box_iou']:7.3f}{s['click_oracle_iou']:7.3f}"
    except (OSError, ValueError, KeyError):
        figures = f"{'-':>7}{'-':>7}{'-':>7}"
    print(f"{name:<15}{figures}  {seconds:>7}  {last}")
PY
[[ -n "${SMI:-}" ]] && kill "$SMI" 2>/dev/null
echo "gpu_ablation done: results in $OUT/"
