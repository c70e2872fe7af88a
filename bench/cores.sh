#!/bin/bash
# cores.sh: how fast this machine runs two independent trainings side by
# side, against one alone: the ceiling for scaling over ranks here.
#
# usage: bench/cores.sh [NF=128] [BATCH=4]
# Runs `ncsn train` (1 rank, 1 thread, 8 steps, random 3x32x32 data) once
# alone, then twice at the same time as independent processes (no MPI),
# and prints each run's median step time (metrics.csv, steps 2-8) and the
# combined rate of the pair over the rate alone (2.0 = both cores at full
# speed). Environment: NCSN (default build/ncsn), PYTHON (/usr/bin/python3).
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
T=(train --data "$W/d.h5" --nf "$NF" --batch "$BATCH" --sigma-begin 50 --sigma-end 0.01 --steps 8
   --ckpt-every 0 --resume none)
median() {
    "$PY" -c 'import csv, statistics, sys
w = [float(r["wall_s"]) for r in csv.DictReader(open(sys.argv[1] + "/metrics.csv"))][1:]
print(f"{statistics.median(b - a for a, b in zip(w, w[1:])):.3f}")' "$1"
}
export OMP_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
"$NCSN" "${T[@]}" --run-dir "$W/alone" >"$W/alone.log" 2>&1
"$NCSN" "${T[@]}" --run-dir "$W/a" >"$W/a.log" 2>&1 &
"$NCSN" "${T[@]}" --run-dir "$W/b" >"$W/b.log" 2>&1
wait
t0=$(median "$W/alone") ta=$(median "$W/a") tb=$(median "$W/b")
echo "nf $NF, batch $BATCH, 1 thread: alone $t0 s/step; two at once $ta and $tb s/step"
"$PY" -c 'import sys; t0, a, b = map(float, sys.argv[1:]); print(f"pair over alone: {t0 / a + t0 / b:.2f}x (2.00 = no contention); a 2-rank run waits for the slower: {2 * t0 / max(a, b):.2f}x")' "$t0" "$ta" "$tb"
