#!/bin/bash
# test_stream.sh: a dataset read per batch trains exactly as one held in
# memory (issue 14, item 9).
#
#   tests/test_stream.sh NCSN_BIN SOURCE_DIR
#
# NCSN_DATA_CACHE_MB=0 forces the streamed path (each batch's images read
# in file order, one hyperslab per run of consecutive indices) on small files. Each case trains a tiny model (nf 8, 8x8)
# twice, in memory and streamed, and checks that the printed data line says
# which path ran, and that the final checkpoints (/model and the Adam
# moments) are bitwise equal and metrics.csv has the same step, loss, lr and
# grad_norm columns:
#   1. uint8 [N,H,W,C] RGB stored in chunks of 3 images, global batch
#      12 > N = 10, so batches span two epochs and repeat images;
#   2. float32 NCHW with the noise levels chosen from the data (the largest
#      pairwise distance reads the images through the same path);
#   3. uint8 [N,H,W] on 2 ranks (each rank reads its slice);
#   4. memory: on a 64 MiB dataset the streamed run's peak RSS is at least
#      48 MiB below the in-memory run's.
#
# Exit 0 pass, 1 fail, 77 skip (python3-h5py/numpy missing). Environment:
# MPI_LAUNCH (default "mpiexec --oversubscribe -n"), PYTHON.
set -u
src=$2
. "$(dirname "$0")/preamble.sh"
unset NCSN_DATA_CACHE_MB

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
ok()  { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; failed=1; }
show() { tail -n "${2:-8}" "$1" 2>/dev/null | sed 's/^/    | /'; }

"$py" - "$tmp" <<'EOF' || exit 1
import sys, h5py, numpy as np
w, rng = sys.argv[1], np.random.default_rng(7)
with h5py.File(f"{w}/rgb.h5", "w") as f:
    f.create_dataset("images", data=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), chunks=(3, 8, 8, 3))
with h5py.File(f"{w}/f32.h5", "w") as f:
    f.create_dataset("images", data=rng.uniform(-1, 1, (24, 1, 8, 8)).astype(np.float32)).attrs["layout"] = "NCHW"
with h5py.File(f"{w}/grey.h5", "w") as f:
    f["images"] = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
with h5py.File(f"{w}/big.h5", "w") as f:  # 64 MiB
    f["images"] = rng.integers(0, 256, (65536, 32, 32), dtype=np.uint8)
EOF

# train NAME RANKS CACHE_MB ARGS...: one run into $tmp/NAME (log NAME.out/.err)
train() {
    local name=$1 ranks=$2 mb=$3
    shift 3
    local cmd=("$bin" train --run-dir "$tmp/$name" "$@")
    [ "$ranks" -gt 1 ] && cmd=("${launch[@]}" "$ranks" "${cmd[@]}")
    env ${mb:+NCSN_DATA_CACHE_MB=$mb} "${cmd[@]}" >"$tmp/$name.out" 2>"$tmp/$name.err"
}

# compare CASE RANKS STEPS ARGS...: in memory (default limit) against streamed (0)
compare() {
    local name=$1 ranks=$2 steps=$3
    shift 3
    local args=(--nf 8 --steps "$steps" --ckpt-every "$steps" --seed 3 "$@") ck
    ck=$(printf "ckpt-%08d.h5" "$steps")
    if ! train "$name-mem" "$ranks" "" "${args[@]}" || ! train "$name-str" "$ranks" 0 "${args[@]}"; then
        bad "$name: a run failed"; show "$tmp/$name-mem.err"; show "$tmp/$name-str.err"; return
    fi
    if ! grep -q "^  data .*, in memory$" "$tmp/$name-mem.out" ||
       ! grep -q "^  data .*, read per batch (larger than NCSN_DATA_CACHE_MB)$" "$tmp/$name-str.out"; then
        bad "$name: the data lines do not say in memory / read per batch"
        grep "^  data " "$tmp/$name-mem.out" "$tmp/$name-str.out" | sed 's/^/    | /'
        return
    fi
    if ! "$py" "$src/tests/ckpt_compare.py" same "$tmp/$name-mem/$ck" "$tmp/$name-str/$ck" \
            model optim/adam_m optim/adam_v >"$tmp/$name.cmp"; then
        bad "$name: streamed weights differ from in-memory ones"; show "$tmp/$name.cmp"; return
    fi
    if ! cmp -s <(cut -d, -f1-4 "$tmp/$name-mem/metrics.csv") <(cut -d, -f1-4 "$tmp/$name-str/metrics.csv"); then
        bad "$name: metrics.csv rows differ"; paste -d'|' "$tmp/$name-mem/metrics.csv" "$tmp/$name-str/metrics.csv" | sed 's/^/    | /'
        return
    fi
    ok "$name: streamed = in memory, bitwise ($steps steps, $ranks rank(s), final loss $(tail -n1 "$tmp/$name-str/metrics.csv" | cut -d, -f2))"
}

compare rgb 1 4 --data "$tmp/rgb.h5" --in-channels 3 --num-classes 3 --sigmas 1,0.5,0.1 --batch 12
compare f32 1 3 --data "$tmp/f32.h5" --in-channels 1 --num-classes 4 --batch 6 --sigma-pick 16
if grep -q "^noise levels from the data" "$tmp/f32-str.out"; then ok "f32: noise levels chosen from the streamed data"
else bad "f32: the noise levels were not chosen from the data"; show "$tmp/f32-str.out"; fi
compare grey2 2 3 --data "$tmp/grey.h5" --in-channels 1 --num-classes 3 --sigmas 1,0.5,0.1 --batch 8

# Peak RSS of one step on the 64 MiB file, in memory and streamed.
maxrss() {
    "$py" - "$@" <<'EOF'
import resource, subprocess, sys
mb, cmd = sys.argv[1], sys.argv[2:]
env = None
if mb:
    import os
    env = dict(os.environ, NCSN_DATA_CACHE_MB=mb)
rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024 if rc == 0 else -1)
EOF
}
big=("$bin" train --data "$tmp/big.h5" --in-channels 1 --nf 8 --num-classes 3 --sigmas 1,0.5,0.1 --batch 4 --steps 1)
mem=$(maxrss "" "${big[@]}" --run-dir "$tmp/big-mem")
str=$(maxrss 16 "${big[@]}" --run-dir "$tmp/big-str")
if [ "$mem" -gt 0 ] && [ "$str" -gt 0 ] && [ $((mem - str)) -ge 48 ]; then
    ok "memory: 64 MiB dataset, peak RSS $mem MiB in memory, $str MiB streamed (NCSN_DATA_CACHE_MB=16)"
else
    bad "memory: peak RSS $mem MiB in memory, $str MiB streamed: expected at least 48 MiB less streamed (-1: run failed)"
fi

[ $failed -eq 0 ] && echo "data_stream: all checks passed"
exit $failed
