#!/usr/bin/env bash
# The GPU checks of JPEG decoding on the card (issue 18, part 3), in one go, on a machine with
# an NVIDIA GPU: the benchmarks' GPU modes and tests/test_gpu.py, most important first, each
# within what is left of one time budget, every log written to $OUT as it runs.
#
#   bash bench/gpu_check.sh
#
# OUT           where the logs go (default bench/out/gpu-check; the device tool sets it)
# PYTHON        the interpreter (default .venv/bin/python if there is one, else python3: the
#               device machines' own, which holds PyTorch and torchvision)
# GPU_CHECK_BUDGET_S   seconds for everything (default 540: one device call of 10 minutes)
# TAGGER_BENCH_PHOTOS  the project's photos (default ./shared/photos, else ../shared/photos,
#               else tests/data/photos: the camera-size photos are made from whichever is found)
#
# Wheels of the packages that interpreter lacks wait in .whl/ (bench/README.md lists them and
# how to fetch them); they are installed into /tmp/site first.
#
# What it writes: machine.txt; one log per step; summary.txt (each step's exit status);
# results.jsonl (every benchmark's JSON line).

set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out/gpu-check}"
mkdir -p "$OUT"
: >"$OUT/summary.txt"
started=$(date +%s)
budget="${GPU_CHECK_BUDGET_S:-540}"

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
for folder in "${TAGGER_BENCH_PHOTOS:-}" shared/photos ../shared/photos tests/data/photos; do
    if [ -n "$folder" ] && [ -d "$folder" ]; then
        TAGGER_BENCH_PHOTOS="$(cd "$folder" && pwd)"
        break
    fi
done
export TAGGER_BENCH_PHOTOS

{
    date -u
    nvidia-smi
    "$PYTHON" -c "import sys, torch, torchvision; print(sys.version); print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'CUDA', torch.cuda.is_available() and torch.cuda.get_device_name())"
    echo "photos: $TAGGER_BENCH_PHOTOS"
    git log -1 --oneline 2>/dev/null
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS, or what is left of the budget.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - ($(date +%s) - started) - 10))
    if [ "$left" -lt 60 ]; then
        echo "$name: skipped, ${left}s left of the budget" | tee -a "$OUT/summary.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at most ${limit}s): $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status after $(($(date +%s) - started))s" | tee -a "$OUT/summary.txt"
    tail -n 25 "$OUT/$name.log"
}

# Throughput: a run sharing the decoding with nvJPEG against the CPU threads alone (400 photos).
step tagging_gpu_decode 240 "$PYTHON" -m bench.tagging --gpu-decode-only --photos 400 --rounds 2
# Correctness on the card: the same tags as the CPU, nvJPEG's among them, and the target.
step test_gpu 300 "$PYTHON" -m pytest -q -p no:cacheprovider -rA tests/test_gpu.py
# Every project photo both ways: tags changed, feature cosines, what was handed back and why.
step gpu_decoding 150 "$PYTHON" -m bench.gpu_decoding --device cuda --folder "$TAGGER_BENCH_PHOTOS"
# The whole tagging benchmark with the GPU-decoding runs, and `tagger tag` by device.
step tagging 300 "$PYTHON" -m bench.tagging --photos 400 --rounds 1 --gpu-decode --compare-devices 1200

grep -h '^{"benchmark"' "$OUT"/*.log >"$OUT/results.jsonl" 2>/dev/null
echo "== summary ($(($(date +%s) - started))s)"
cat "$OUT/summary.txt" "$OUT/results.jsonl"
