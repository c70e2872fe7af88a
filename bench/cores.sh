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
train() { # GLOBAL_BATCH RUN_DIR: the training of every run
    echo train --data "$W/d.h5" --nf "$NF" --batch "$1" --sigma-begin 50 --sigma-end 0.01 --steps 8 \
        --ckpt-every 0 --resume none --run-dir "$2"
}
median() {
    "$PY" -c 'import csv, statistics, sys
w = [float(r["wall_s"]) for r in csv.DictReader(open(sys.argv[1] + "/metrics.csv"))][1:]
print(f"{statistics.median(b - a for a, b in zip(w, w[1:])):.3f}")' "$1"
}
export OMP_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
"$NCSN" $(train "$BATCH" "$W/alone") >"$W/alone.log" 2>&1
"$NCSN" $(train "$BATCH" "$W/a") >"$W/a.log" 2>&1 &
"$NCSN" $(train "$BATCH" "$W/b") >"$W/b.log" 2>&1
wait
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS -x HDF5_USE_FILE_LOCKING)
"${MPI[@]}" "$NCSN" $(train "$((2 * BATCH))" "$W/mpi") >"$W/mpi.log" 2>&1
t0=$(median "$W/alone") ta=$(median "$W/a") tb=$(median "$W/b") t2=$(median "$W/mpi")
echo "training, nf $NF, batch $BATCH per process, 1 thread: alone $t0 s/step; two at once $ta and $tb s/step; 2 ranks $t2 s/step"
"$PY" -c 'import sys
t0, a, b, t2 = map(float, sys.argv[1:])
pair, ranks = t0 / a + t0 / b, 2 * t0 / t2
print(f"training: pair over alone {pair:.2f}x (2.00 = no contention); 2 ranks over alone {ranks:.2f}x = {ranks / pair:.2f} of the pair")' \
    "$t0" "$ta" "$tb" "$t2"
grep -h "gradient allreduce" "$W/mpi.log" || true

"$NCSN" init --nf "$NF" --out "$W/m.h5" --num-classes 10 --sigma-begin 50 --sigma-end 0.01 >/dev/null
S=(sample --model "$W/m.h5" --image-size 32 --steps-each 2 --micro-batch "$BATCH")
rate() { sed -n 's/.*(\([0-9.]*\) Langevin sample-steps\/s).*/\1/p' "$1"; }
"$NCSN" "${S[@]}" --n "$BATCH" --out "$W/s0.h5" >"$W/s0.log" 2>&1
"$NCSN" "${S[@]}" --n "$BATCH" --out "$W/sa.h5" >"$W/sa.log" 2>&1 &
"$NCSN" "${S[@]}" --n "$BATCH" --out "$W/sb.h5" >"$W/sb.log" 2>&1
wait
"${MPI[@]}" "$NCSN" "${S[@]}" --n "$((2 * BATCH))" --out "$W/s2.h5" >"$W/s2.log" 2>&1
r0=$(rate "$W/s0.log") ra=$(rate "$W/sa.log") rb=$(rate "$W/sb.log") r2=$(rate "$W/s2.log")
echo "sampling, nf $NF, $BATCH samples per process, 1 thread: alone $r0 sample-steps/s; two at once $ra and $rb; 2 ranks $r2"
"$PY" -c 'import sys
r0, a, b, r2 = map(float, sys.argv[1:])
pair, ranks = (a + b) / r0, r2 / r0
print(f"sampling: pair over alone {pair:.2f}x; 2 ranks over alone {ranks:.2f}x = {ranks / pair:.2f} of the pair")' \
    "$r0" "$ra" "$rb" "$r2"
