#!/bin/bash
# bench_sample.sh: Langevin sampling throughput on 1 rank and on 2 ranks.
#
# Usage: bench/bench_sample.sh NCSN_BIN
#
# A freshly initialised default network (nf 128, 3 x 32 x 32, 10 noise levels
# from 50 to 0.01) samples 16 images with 2 steps per level: 20 forward
# passes of 16 images. Each rank runs OpenBLAS on one thread. The rate is the
# program's own "Langevin sample-steps/s" (samples x levels x steps over the
# wall time of the sampling loop, up to the gather on rank 0, so it waits
# for the slowest rank); process start-up and model loading are not in it.
# Prints both rates and the ratio 2 ranks / 1 rank (the baseline of the
# same run), and whether the two sample files are identical (they must be).
#
# Environment: MPI_LAUNCH (default "mpirun --oversubscribe -np"), and for a
# smaller run BENCH_N (16), BENCH_NF (128), BENCH_SIZE (32), BENCH_STEPS (2).
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left as the environment sets them.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 NCSN_BIN" >&2
    exit 2
fi
BIN=$(realpath "$1")
N=${BENCH_N:-16}
NF=${BENCH_NF:-128}
SIZE=${BENCH_SIZE:-32}
STEPS=${BENCH_STEPS:-2}
LAUNCH=${MPI_LAUNCH:-mpirun --oversubscribe -np}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HDF5_USE_FILE_LOCKING=FALSE OMP_NUM_THREADS=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_sample.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$BIN" init --out "$WORK/model.h5" --nf "$NF" --sigma-begin 50 --sigma-end 0.01 --seed 1 >/dev/null

# run LABEL OUT [launcher words...]: prints the rate, logs to $WORK/LABEL.log
run() {
    local label=$1 out=$2
    shift 2
    local t0 t1
    t0=$(date +%s.%N)
    "$@" "$BIN" sample --model "$WORK/model.h5" --out "$out" --n "$N" --image-size "$SIZE" \
        --steps-each "$STEPS" --seed 7 >"$WORK/$label.log" 2>&1 || {
        echo "bench_sample: $label failed:" >&2
        tail -n 20 "$WORK/$label.log" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    local rate
    rate=$(sed -n 's/.*(\([0-9.]*\) Langevin sample-steps\/s).*/\1/p' "$WORK/$label.log" | tail -n 1)
    if [ -z "$rate" ]; then
        echo "bench_sample: no 'Langevin sample-steps/s' line in the output of $label" >&2
        exit 1
    fi
    echo "$rate $(echo "$t1 - $t0" | bc -l)"
}

echo "ncsn sample: $N samples of 3 x $SIZE x $SIZE, nf $NF, 10 levels x $STEPS steps" \
     "($((10 * STEPS)) forward passes of $N samples), OMP_NUM_THREADS=1 per rank," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
# Which kernels OpenBLAS picked (a query only; nothing is set).
LIBBLAS=$(ldd "$BIN" | awk '/libopenblas/ {print $3; exit}')
if [ -n "$LIBBLAS" ] && [ -x /usr/bin/python3 ]; then
    CORE=$(/usr/bin/python3 -c "import ctypes, sys; l = ctypes.CDLL(sys.argv[1]);
l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())" \
        "$LIBBLAS" 2>/dev/null || echo unknown)
    echo "  OpenBLAS kernels: $CORE ($LIBBLAS)"
fi
read -r R1 W1 < <(run rank1 "$WORK/s1.h5")
printf '  1 rank : %10.2f Langevin sample-steps/s  (command wall %.1f s)\n' "$R1" "$W1"
# shellcheck disable=SC2086
read -r R2 W2 < <(run rank2 "$WORK/s2.h5" $LAUNCH 2)
printf '  2 ranks: %10.2f Langevin sample-steps/s  (command wall %.1f s)\n' "$R2" "$W2"
printf '  ratio 2 ranks / 1 rank: %.2f\n' "$(echo "$R2 / $R1" | bc -l)"
if command -v h5diff >/dev/null 2>&1; then
    if h5diff -q "$WORK/s1.h5" "$WORK/s2.h5" /samples /samples >/dev/null 2>&1; then
        echo "  samples of 1 and 2 ranks: identical"
    else
        echo "  samples of 1 and 2 ranks: DIFFERENT" >&2
        exit 1
    fi
fi
