#!/usr/bin/env bash
# profile.sh: where a training step and a sampling step spend their time,
# per stage, from `perf record` samples of the real commands.
#
# usage: bench/profile.sh [NF=128] [THREADS=1]
# Runs (1 rank, THREADS threads, random 3x32x32 data):
#   training: ncsn train, batch 8, 6 steps
#   sampling: ncsn sample, 16 samples, 6 levels x 1 Langevin step
# and prints each stage's share of the perf samples (start-up included;
# KEEP=1 keeps the raw reports). Stages, by symbol: products (gemm16's
# kernel, or OpenBLAS sgemm), decimation (decimate, undecimate, when the
# compiler keeps them as functions), transforms (Winograd's input,
# output and weight transforms and adjoints, with whatever the compiler
# inlined into wino_forward and wino_backward: with gcc 12 -O3 the input
# and output transforms and the decimation), norm+ELU, pooling, image-
# channel convs (the first and last conv, under 4 channels: direct sums,
# or im2col in code before 2026-12-08), optimizer (Adam,
# EMA, clipping), data (HDF5 reads), memory (memset/memcpy, page
# faults), threads (libgomp: waiting at barriers and for work), kernel
# (other system time), other. The gradient allreduce needs 2 ranks and
# is timed by `ncsn train` itself (its "gradient allreduce" line), not
# here.
# Environment: NCSN (default build/ncsn), PYTHON (/usr/bin/python3),
# PERF (perf). Needs perf and kernel.perf_event_paranoid <= 2 (root is fine).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NCSN=${NCSN:-$ROOT/build/ncsn} PY=${PYTHON:-/usr/bin/python3} PERF=${PERF:-perf}
NF=${1:-128} THREADS=${2:-1}
[ -x "$NCSN" ] || { echo "profile.sh: $NCSN is not an executable (build first)" >&2; exit 1; }
command -v "$PERF" >/dev/null || { echo "profile.sh: $PERF not found (Debian: linux-perf)" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/profile.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
export OMP_NUM_THREADS=$THREADS HDF5_USE_FILE_LOCKING=FALSE
"$PY" -c 'import sys, h5py, numpy as np
x = np.random.default_rng(0).uniform(-1, 1, (64, 3, 32, 32)).astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("images", data=x).attrs["layout"] = "NCHW"' "$W/d.h5"
"$NCSN" init --nf "$NF" --out "$W/m.h5" --num-classes 6 --sigmas 50,20,5,1,0.1,0.01 >/dev/null

"$PERF" record -q -F 499 -o "$W/train.data" -- "$NCSN" train --data "$W/d.h5" --run-dir "$W/run" --nf "$NF" \
    --batch 8 --steps 6 --sigma-begin 50 --sigma-end 0.01 --num-classes 10 --ckpt-every 0 --resume none \
    >"$W/train.log" 2>&1
"$PERF" record -q -F 499 -o "$W/sample.data" -- "$NCSN" sample --model "$W/m.h5" --out "$W/s.h5" --n 16 \
    --image-size 32 --steps-each 1 >"$W/sample.log" 2>&1 \
    || { echo "profile.sh: sampling failed:" >&2; tail -3 "$W/sample.log" >&2; exit 1; }

for what in train sample; do
    "$PERF" report -q -i "$W/$what.data" --no-children --sort dso,symbol --stdio 2>/dev/null >"$W/$what.txt"
done
"$PY" - "$W" "$NF" "$THREADS" <<'PYEOF'
import re, sys
w, nf, threads = sys.argv[1:4]
STAGES = [  # first match wins
    ("products", r"sgemm|libopenblas|gemm16|block_\d"),
    ("decimation", r"decimate|zero_pads"),
    ("transforms", r"transform|f4_|f2_|wino_"),
    ("norm+ELU", r"cin_|cinpp_|norm|elu_"),
    ("pooling", r"maxpool|pool"),
    ("image convs", r"direct_|im2col|col2im|conv_forward|conv_backward"),
    ("optimizer", r"adam|ema_|grad_norm|grad_scale"),
    ("data", r"libhdf5|H5|data_read|libz|libsz"),
    ("memory", r"memset|memcpy|memmove|page_fault|clear_page"),
    ("threads", r"libgomp"),
    ("kernel", r"kernel\.kallsyms"),
]
def shares(path):
    out = {s: 0.0 for s, _ in STAGES}
    out["other"] = 0.0
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        key = dso + " " + sym
        for name, rx in STAGES:
            if re.search(rx, key):
                out[name] += pct
                break
        else:
            out["other"] += pct
    return out
t, s = shares(f"{w}/train.txt"), shares(f"{w}/sample.txt")
print(f"nf {nf}, 3x32x32, 1 rank x {threads} thread(s): share of perf samples per stage "
      "(training: batch 8, 6 steps; sampling: 16 samples, 6 forward passes; start-up included)")
print(f"{'stage':<14} {'training':>9} {'sampling':>9}")
for name in [n for n, _ in STAGES] + ["other"]:
    print(f"{name:<14} {t[name]:8.1f}% {s[name]:8.1f}%")
PYEOF
"$PY" -c 'import csv, statistics, sys
w = [float(r["wall_s"]) for r in csv.DictReader(open(sys.argv[1]))]
print(f"training: {statistics.median(b - a for a, b in zip(w[1:], w[2:])):.3f} s per step (median of steps 3-6, under perf)")' \
    "$W/run/metrics.csv"
sed -n 's/.*(\([0-9.]*\) Langevin sample-steps\/s).*/sampling: \1 sample-steps\/s (under perf)/p' "$W/sample.log"
