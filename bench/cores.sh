#!/bin/bash
# cores.sh: how fast this machine runs two independent jobs side by side,
# against one alone (the ceiling for scaling over ranks here), and how
# close a 2-rank MPI job comes to that ceiling.
#
# usage: bench/cores.sh [NF=128] [BATCH=4]
# Training: `ncsn train` (1 thread, 8 steps of BATCH, random 3x32x32 data)
# once alone, then twice at once as independent processes (no MPI), then
# as 2 MPI ranks with twice the batch (BATCH per rank); each run's median
# step time (metrics.csv, steps 2-8). Sampling: `ncsn sample` (1 thread,
# BATCH samples, 10 levels x 2 steps) the same three ways, each run's
# Langevin sample-steps/s as it reports them. Prints the pair's combined
# rate over the rate alone (2.00 = both cores at full speed), the 2-rank
# job's rate over the rate alone, and that as a fraction of the pair's;
# and the trainer's own allreduce timers of the 2-rank run (where the rest
# of a training step goes). Environment: NCSN (default build/ncsn), PYTHON
# (/usr/bin/python3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NCSN=${NCSN:-$ROOT/build/ncsn} PY=${PYTHON:-/usr/bin/python3}
NF=${1:-128} BATCH=${2:-4}
[ -x "$NCSN" ] || { echo "cores.sh: $NCSN is not an executable (build first)" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/cores.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$PY" -c 'import sys, h5py, numpy as np
x = np.random.default_rng(0).uniform(-1, 1, (64, 3, 32, 32)).astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("images", data=x).attrs["layout"] = "NCHW"' "$W/d.h5"
median() {
    "$PY" -c 'import csv, statistics, sys
w = [float(r["wall_s"]) for r in csv.DictReader(open(sys.argv[1] + "/metrics.csv"))][1:]
print(f"{statistics.median(b - a for a, b in zip(w, w[1:])):.3f}")' "$1"
}
rate() { sed -n 's/.*(\([0-9.]*\) Langevin sample-steps\/s).*/\1/p' "$1"; }
# ratios WHAT UNIT ALONE A B TWO_RANKS: the pair's and the 2-rank job's rates
# over the rate alone. UNIT "rate": the arguments are rates, the 2-rank one
# counting both ranks; "time": seconds per step, the 2-rank job's steps
# holding twice the images.
ratios() {
    "$PY" -c 'import sys
what, unit, *v = sys.argv[1:]
r0, a, b, r2 = map(float, v) if unit == "rate" else (1 / float(x) * k for x, k in zip(v, (1, 1, 1, 2)))
pair, ranks = (a + b) / r0, r2 / r0
print(f"{what}: pair over alone {pair:.2f}x (2.00 = no contention); 2 ranks over alone {ranks:.2f}x = {ranks / pair:.2f} of the pair")' "$@"
}
export OMP_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS -x HDF5_USE_FILE_LOCKING)
# train GLOBAL_BATCH RUN_DIR [LAUNCHER...] and sample N NAME [LAUNCHER...]: one
# run each, output in RUN_DIR.log and $W/NAME.log
train() {
    local batch=$1 dir=$2
    shift 2
    "$@" "$NCSN" train --data "$W/d.h5" --nf "$NF" --batch "$batch" --sigma-begin 50 --sigma-end 0.01 --steps 8 \
        --ckpt-every 0 --resume none --run-dir "$dir" >"$dir.log" 2>&1
}
sample() {
    local n=$1 name=$2
    shift 2
    "$@" "$NCSN" sample --model "$W/m.h5" --image-size 32 --steps-each 2 --micro-batch "$BATCH" --n "$n" \
        --out "$W/$name.h5" >"$W/$name.log" 2>&1
}

train "$BATCH" "$W/alone"
train "$BATCH" "$W/a" &
train "$BATCH" "$W/b"
wait
train "$((2 * BATCH))" "$W/mpi" "${MPI[@]}"
t0=$(median "$W/alone") ta=$(median "$W/a") tb=$(median "$W/b") t2=$(median "$W/mpi")
echo "training, nf $NF, batch $BATCH per process, 1 thread: alone $t0 s/step; two at once $ta and $tb s/step; 2 ranks $t2 s/step"
ratios training time "$t0" "$ta" "$tb" "$t2"
grep -h "gradient allreduce" "$W/mpi.log" || true

"$NCSN" init --nf "$NF" --out "$W/m.h5" --num-classes 10 --sigma-begin 50 --sigma-end 0.01 >/dev/null
sample "$BATCH" s0
sample "$BATCH" sa &
sample "$BATCH" sb
wait
sample "$((2 * BATCH))" s2 "${MPI[@]}"
r0=$(rate "$W/s0.log") ra=$(rate "$W/sa.log") rb=$(rate "$W/sb.log") r2=$(rate "$W/s2.log")
echo "sampling, nf $NF, $BATCH samples per process, 1 thread: alone $r0 sample-steps/s; two at once $ra and $rb; 2 ranks $r2"
ratios sampling rate "$r0" "$ra" "$rb" "$r2"
