#!/usr/bin/env bash
# One GPU session for issue #20, in one command: check the GPU path (pytest -m cuda), time it against PyTorch
# (python -m benchmarks.gpu), and profile it (torch.profiler/CUPTI kernel tables, the host's Python profile,
# Nsight Systems and Nsight Compute where they work), writing everything into $OUT.  docs/gpu.md, "The GPU
# session", says how to run it with the device tool and what each step gives.
#
#   bash benchmarks/gpu_session.sh --fetch-wheels   # on the CPU machine, once: the numpy<2.5 wheel into .whl/
#   bash benchmarks/gpu_session.sh                  # on the GPU machine, from the repository root
#
# Every step runs under its own time limit (seconds, below), cut further so that the whole run ends within
# TOTAL_BUDGET; a step that fails or runs out of time is recorded in summary.md and the session goes on.
# Environment: OUT (default ./gpu_session_out), PYTHON (python3), TOTAL_BUDGET (530), GRAPH=1 (also try to
# capture a LeNet step as a CUDA graph), NUMPY_PIN (numpy version of the wheel, 2.4.6); DEVICE=cpu TINY=1 make a
# dry run of the whole pipeline on a CPU machine (tiny sizes; no Nsight tools there).
set -u -o pipefail

NUMPY_PIN=${NUMPY_PIN:-2.4.6}
if [ "${1:-}" = "--fetch-wheels" ]; then
    # numba-cuda cannot compile with NumPy 2.5 (docs/gpu.md); the GPU image has 2.5 and may reach no registry
    # .whl/ is git-ignored (.gitignore): name it in the device tool's carry
    exec "${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "numpy==$NUMPY_PIN"
fi

START=$(date +%s)
TOTAL_BUDGET=${TOTAL_BUDGET:-530}
RESERVE=15                        # seconds kept for writing summary.md and the archive
OUT=${OUT:-$PWD/gpu_session_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${TINY:+--quick}; SMALL=${TINY:+--tiny}
W=$(mktemp -d /tmp/gpu_session.XXXXXX)   # every raw output; summary.md, the step logs and raw.tar.gz go to $OUT
mkdir -p "$OUT"
SUMMARY=$W/summary.md
export PYTHONUNBUFFERED=1 TINYCONV_OFFLINE=1
mkdir -p .dev && ln -sfn ../kernels .dev/tinyconv_kernels
export PYTHONPATH=$PWD:$PWD/.dev${PYTHONPATH:+:$PYTHONPATH}

remaining() { echo $(( TOTAL_BUDGET - RESERVE - ($(date +%s) - START) )); }

# step NAME BUDGET COMMAND...: run COMMAND with output to $W/NAME.log, under min(BUDGET, time left)
step() {
    local name=$1 budget=$2; shift 2
    local left; left=$(remaining)
    if [ "$left" -lt 10 ]; then
        echo "| $name | skipped: no time left | | |" >> "$W/steps.md"; return 1
    fi
    [ "$budget" -gt "$left" ] && budget=$left
    local t0; t0=$(date +%s)
    timeout -k 5 "$budget" "$@" > "$W/$name.log" 2>&1
    local rc=$? t=$(( $(date +%s) - t0 ))
    local status=ok
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMED OUT"
    [ $rc -ne 0 ] && [ "$status" = ok ] && status="failed"
    echo "| $name | $status (exit $rc) | $t s | $budget s |" >> "$W/steps.md"
    return $rc
}

finish() {
    {
        echo "# GPU session $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - START )) s"
        echo
        echo '```'; cat "$W/env.log" 2>/dev/null; echo '```'
        echo
        echo "| step | status | took | limit |"; echo "|---|---|---|---|"; cat "$W/steps.md" 2>/dev/null
        echo
        echo "## pytest -m cuda (last lines)"; echo '```'; tail -n 25 "$W/pytest.log" 2>/dev/null; echo '```'
        for f in bench bench_tf32 probe; do
            [ -s "$W/$f.log" ] && { echo; echo "## $f"; echo; cat -s "$W/$f.log" | tail -n 70; }
        done
        for f in trace_lenet trace_resnet18; do
            [ -s "$W/$f.md" ] && { echo; head -n 22 "$W/$f.md"; }
        done
        [ -s "$W/ncu.log" ] && { echo; echo "## ncu (first lines; full report in raw.tar.gz)"; echo '```';
                                 grep -v '^==PROF==' "$W/ncu.log" | head -n 80; echo '```'; }
        [ -s "$W/nsys_stats.log" ] && { echo; echo "## nsys stats (first lines)"; echo '```';
                                        head -n 80 "$W/nsys_stats.log"; echo '```'; }
    } > "$SUMMARY"
    cp "$SUMMARY" "$OUT/summary.md"
    for f in pytest bench probe; do [ -f "$W/$f.log" ] && cp "$W/$f.log" "$OUT/$f.log"; done
    cat "$W"/trace_*.md "$W/cprofile_lenet.txt" 2>/dev/null > "$OUT/profile.md"
    # the rest (traces, nsys/ncu reports, logs) as one archive, leaving out files over 12 MB
    (cd "$W" && find . -type f -size -12M ! -name raw.tar.gz -print0 | tar --null -czf "$OUT/raw.tar.gz" -T -)
    ls -la "$OUT"
}
trap finish EXIT

# 1. the environment; numba-cuda needs NumPy < 2.5: the carried wheel, else the registry (if reachable).
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
    "$PY" -V
} > "$W/env.log" 2>&1
# CuPy and numba-cuda are on that image (for the driver's CUDA major version); installed from the registry only
# if missing (too large to carry), PyTorch never (its CUDA build is there; without it the rows are tinyconv's)
CUDA_MAJOR=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -n 1)
MISSING=""
"$PY" -c 'import cupy' 2>/dev/null || MISSING="$MISSING cupy-cuda${CUDA_MAJOR:-12}x"
"$PY" -c 'import numba_cuda' 2>/dev/null || MISSING="$MISSING numba-cuda[cu${CUDA_MAJOR:-12}]"
export PYTHONPATH=/tmp/site:$PYTHONPATH
if [ -n "$MISSING" ] && [ "$DEVICE" = cuda ]; then
    echo "installing:$MISSING" >> "$W/env.log"
    step install 90 "$PY" -m pip install -q --target /tmp/site --timeout 20 "numpy<2.5" $MISSING
fi
if ! "$PY" -c 'import numpy, sys; sys.exit(tuple(map(int, numpy.__version__.split(".")[:2])) >= (2, 5))'; then
    if ls .whl/numpy-*.whl > /dev/null 2>&1; then
        step pin_numpy 60 "$PY" -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site \
            .whl/numpy-*.whl
    else
        step pin_numpy 60 "$PY" -m pip install -q --upgrade --no-deps --target /tmp/site "numpy<2.5" --timeout 20
    fi
fi
"$PY" - >> "$W/env.log" 2>&1 <<'EOF'
import importlib, shutil
for name in ("numpy", "cupy", "numba", "numba_cuda", "torch", "pytest", "pytest_timeout"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "(imported)"))
    except Exception as e:
        print(name, "NOT AVAILABLE:", type(e).__name__, e)
import tinyconv
print("tinyconv.cuda.is_available():", tinyconv.cuda.is_available())
import torch
print("torch CUDA:", torch.cuda.is_available(), torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
for tool in ("nsys", "ncu"):
    print(tool, shutil.which(tool))
EOF

# the Nsight tools: on the PATH, or in the image's usual folders
find_tool() {
    command -v "$1" 2>/dev/null && return
    ls -d /usr/local/cuda/bin/"$1" /opt/nvidia/nsight-systems*/bin/"$1" /opt/nvidia/nsight-compute*/"$1" \
          /opt/nvidia/nsight-compute/*/"$1" /opt/nvidia/nsight-compute/*/host/target-linux-x64/"$1" 2>/dev/null | head -n 1
}
NSYS=$(find_tool nsys); NCU=$(find_tool ncu)
echo "nsys: ${NSYS:-none}; ncu: ${NCU:-none}" >> "$W/env.log"

# 2. the tests on the device
TIMEOUT_ARG=""
"$PY" -c 'import pytest_timeout' 2>/dev/null && TIMEOUT_ARG="--timeout=90"
step pytest 260 "$PY" -m pytest -m cuda -q -rfE --tb=short -p no:cacheprovider --continue-on-collection-errors $TIMEOUT_ARG \
    --durations=10 tests

# 3. the benchmark rows against PyTorch
step bench 120 "$PY" -m benchmarks.gpu --device "$DEVICE" $QUICK

# 4. TF32 accuracy and speed, the host's cost per launch (and, with GRAPH=1, a CUDA-graph capture attempt)
step probe 40 "$PY" -m benchmarks.gpu_probe --device "$DEVICE" $SMALL ${GRAPH:+--graph}

# 5. kernel tables (torch.profiler/CUPTI) and the host's Python profile
PROFILE="$PY -m benchmarks.gpu_profile --device $DEVICE $SMALL"
step trace_lenet 30 $PROFILE --workload lenet --steps 30 --trace "$W/trace_lenet"
step trace_resnet18 40 $PROFILE --workload resnet18 --steps 3 --trace "$W/trace_resnet18"
step cprofile_lenet 20 $PROFILE --workload lenet --steps 30 --cprofile "$W/cprofile_lenet.txt"

# 6. Nsight Systems: a LeNet slice, then its summaries (kernels, CUDA API calls, NVTX ranges)
if [ -n "$NSYS" ]; then
    step nsys 45 "$NSYS" profile --trace=cuda,nvtx --sample=none --cpuctxsw=none --force-overwrite=true \
        -o "$W/nsys_lenet" $PROFILE --workload lenet --steps 30 --nvtx
    rep=$(ls "$W"/nsys_lenet.nsys-rep "$W"/nsys_lenet.qdrep 2>/dev/null | head -n 1)
    if [ -n "$rep" ]; then
        step nsys_stats 25 "$NSYS" stats --force-export=true --report cuda_gpu_kern_sum,cuda_api_sum,nvtx_sum \
            "$rep" || step nsys_stats_old 20 "$NSYS" stats --report gpukernsum,cudaapisum "$rep"
        cat "$W"/nsys_stats_old.log >> "$W/nsys_stats.log" 2>/dev/null
    fi
else
    echo "| nsys | skipped: not found | | |" >> "$W/steps.md"
fi

# 7. Nsight Compute on the top kernels of the resnet18 step (names from its trace), a few launches only
if [ -n "$NCU" ]; then
    REGEX="regex:."
    [ -s "$W/trace_resnet18.json" ] && REGEX=$("$PY" -m benchmarks.gpu_profile --ncu-regex \
        --from-trace "$W/trace_resnet18.json" --top 4 2>/dev/null || echo "regex:.")
    echo "ncu kernel filter: $REGEX" >> "$W/env.log"
    # the warm-up step runs the same kernels as the timed one: no NVTX filter needed
    step ncu 60 "$NCU" --clock-control none --target-processes all \
        --kernel-name "$REGEX" --launch-count 8 --section SpeedOfLight --section LaunchStats \
        --section Occupancy $PROFILE --workload resnet18 --steps 1 --warmup 1
else
    echo "| ncu | skipped: not found | | |" >> "$W/steps.md"
fi

# 8. if time is left: the rows again with TF32 allowed in tinyconv's products (cuDNN's default for convolutions)
if [ "$(remaining)" -ge 60 ]; then
    step bench_tf32 120 "$PY" -m benchmarks.gpu --device "$DEVICE" $QUICK --tf32
else
    echo "| bench_tf32 | skipped: under 60 s left | | |" >> "$W/steps.md"
fi
exit 0
