#!/bin/bash
# test_rundir.sh: the run directory under misuse (issue 14).
#
#   tests/test_rundir.sh NCSN_BIN SOURCE_DIR
#
# On a tiny model (nf 8, 1 channel, 8x8 images, batch 8), plain processes:
#   1. lock: while a long run holds DIR, a second `ncsn train` on DIR exits 2
#      with one line naming the holder's PID and host, and leaves DIR as it
#      was; the same on 2 ranks (one message, every rank exits 2);
#   2. takeover: the holder is killed (SIGKILL); the next run says it takes
#      over the lock of that PID, resumes from its newest checkpoint and
#      finishes; no .lock is left behind;
#   3. metrics.csv after a SIGKILL loop (checkpoints every 3 steps, rows
#      flushed every 7): the finished run's file has the header and each
#      step exactly once, in order;
#   4. metrics.csv at a start: a fresh start over an old file keeps only the
#      header; a file without its header, with a malformed line and a cut-off
#      last line is rewritten with the header and the complete rows up to the
#      checkpoint resumed from;
#   5. a run stopped by SIGTERM (exit 3) lets go of the lock: no .lock left.
#
# Exit 0 pass, 1 fail, 77 skip (python3-h5py/numpy missing). Environment:
# MPI_LAUNCH (default "mpiexec --oversubscribe -n"), PYTHON.
set -u
. "$(dirname "$0")/preamble.sh"

tmp=$(mktemp -d)
started=()
cleanup() {
    local p
    for p in "${started[@]}"; do  # only if it still runs our binary
        tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$bin" && kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

failed=0
ok()  { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; failed=1; }
show() { tail -n "${2:-8}" "$1" 2>/dev/null | sed 's/^/    | /'; }

data=$tmp/d.h5
"$py" -c 'import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = np.random.default_rng(3).integers(0, 256, (64, 8, 8), dtype=np.uint8)' "$data" || exit 1
model=(--data "$data" --in-channels 1 --nf 8 --num-classes 4 --sigmas 1,0.5,0.2,0.1 --batch 8 --seed 5)
header="step,loss,lr,grad_norm,images_per_s,wall_s"
# rows DIR: the number of lines after the header of DIR/metrics.csv
rows() { [ -f "$1/metrics.csv" ] && echo $(($(wc -l <"$1/metrics.csv") - 1)) || echo 0; }
# metrics_exact DIR N: the header, then steps 1..N, each once, in order, complete
metrics_exact() {
    awk -F, -v n="$2" -v h="$header" 'NR == 1 { ok = $0 == h; next }
        { if ($1 != NR - 1 || NF != 6) ok = 0 } END { exit !(ok && NR == n + 1) }' "$1/metrics.csv"
}
alive() { local a b st; read -r a b st _ 2>/dev/null <"/proc/$1/stat" && [ "$st" != Z ]; }

# ---- 1. a second run on a locked dir ----
run=$tmp/run
"$bin" train "${model[@]}" --run-dir "$run" --steps 100000 --ckpt-every 10 --log-every 1 >"$tmp/a.out" 2>"$tmp/a.err" &
holder=$!
started+=("$holder")
for ((i = 0; i < 1500; i++)); do [ "$(rows "$run")" -ge 15 ] && break; sleep 0.02; done
if [ "$(rows "$run")" -lt 15 ]; then
    bad "the long run did not get to step 15"; show "$tmp/a.err"; exit 1
fi
"$bin" train "${model[@]}" --run-dir "$run" --steps 5 >"$tmp/b.out" 2>"$tmp/b.err"
rc=$?
want="in use by another ncsn train (PID $holder on host $(hostname)"
if [ $rc -eq 2 ] && [ "$(grep -c . "$tmp/b.err")" -eq 1 ] && grep -qF "$want" "$tmp/b.err" && alive "$holder"; then
    ok "1: second run on a locked dir: exit 2, $(cat "$tmp/b.err")"
else
    bad "1: second run on a locked dir: exit $rc, wanted 2 and one line with '$want'"; show "$tmp/b.err"
fi
"${launch[@]}" 2 -x OPENBLAS_NUM_THREADS -x HDF5_USE_FILE_LOCKING "$bin" train "${model[@]}" --run-dir "$run" --steps 5 \
    >"$tmp/b2.out" 2>"$tmp/b2.err"
rc=$?
n=$(grep -c "^ncsn: .*$want" "$tmp/b2.err")
if [ $rc -eq 2 ] && [ "$n" -eq 1 ]; then ok "1: the same on 2 ranks: exit 2, one message"
else bad "1: on 2 ranks: exit $rc, $n messages"; show "$tmp/b2.err"; fi
grep -qx "pid $holder host $(hostname)" "$run/.lock" || bad "1: $run/.lock no longer names the holder"

# ---- 2. takeover after SIGKILL ----
kill -KILL "$holder"
wait "$holder" 2>/dev/null
newest=$(readlink "$run/latest.h5")
"$bin" train "${model[@]}" --run-dir "$run" --steps $((10#${newest:5:8} + 3)) >"$tmp/c.out" 2>"$tmp/c.err"
rc=$?
if [ $rc -ne 0 ]; then
    bad "2: the run after the kill: exit $rc"; show "$tmp/c.err"
elif [ "$(grep -c "^taking over $run/.lock: its holder (PID $holder on host $(hostname)) is gone$" "$tmp/c.out")" -ne 1 ]; then
    bad "2: not one takeover line naming PID $holder"; show "$tmp/c.out"
elif ! grep -q "^resuming from $run/$newest" "$tmp/c.out"; then
    bad "2: did not resume from $newest"; show "$tmp/c.out"
elif [ -e "$run/.lock" ]; then
    bad "2: $run/.lock left behind after a finished run"
elif ! metrics_exact "$run" $((10#${newest:5:8} + 3)); then
    bad "2: metrics.csv is not the header and steps 1..$((10#${newest:5:8} + 3)) once each"; show "$run/metrics.csv"
else
    ok "2: after SIGKILL the next run takes the lock over, resumes from $newest and finishes; metrics.csv exact"
fi

# ---- 3. SIGKILL loop ----
loop=$tmp/loop
read -r -a delays <<<"$("$py" -c 'import random
r = random.Random(7)
print(" ".join("%.2f" % r.uniform(0.2, 1.2) for _ in range(25)))')"
kills=0 finished=0
for d in "${delays[@]}"; do
    "$bin" train "${model[@]}" --run-dir "$loop" --steps 60 --ckpt-every 3 --log-every 7 >"$tmp/l.out" 2>"$tmp/l.err" &
    p=$!
    started+=("$p")
    sleep "$d"
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    rc=$?
    [ $rc -eq 0 ] && finished=1 && break
    if [ $rc -ne 137 ]; then bad "3: a start exited with $rc before the kill"; show "$tmp/l.err"; break; fi
    kills=$((kills + 1))
done
if [ $finished -eq 0 ]; then
    "$bin" train "${model[@]}" --run-dir "$loop" --steps 60 --ckpt-every 3 --log-every 7 >"$tmp/l.out" 2>"$tmp/l.err" ||
        bad "3: the last start failed"
fi
if metrics_exact "$loop" 60; then ok "3: after $kills SIGKILLs, metrics.csv has the header and steps 1..60 once each, in order"
else bad "3: after $kills SIGKILLs metrics.csv is not the header and steps 1..60"; show "$loop/metrics.csv" 12; fi

# ---- 4. metrics.csv at a start ----
fresh=$tmp/fresh
mkdir -p "$fresh"
printf '%s\n1,9,9,9,9,9\n2,9,9,9,9,9\n' "$header" >"$fresh/metrics.csv"
if "$bin" train "${model[@]}" --run-dir "$fresh" --steps 2 >"$tmp/f.out" 2>&1 && metrics_exact "$fresh" 2 &&
   ! grep -q ',9,9,9,9,9$' "$fresh/metrics.csv"; then
    ok "4: a fresh start over an old metrics.csv starts it anew"
else
    bad "4: fresh start over an old metrics.csv"; show "$fresh/metrics.csv"
fi
"$bin" train "${model[@]}" --run-dir "$fresh" --steps 4 --ckpt-every 4 >"$tmp/f.out" 2>&1
{ sed 1d "$fresh/metrics.csv"; echo "not a row"; printf '5,1.0,0.00'; } >"$fresh/m" && mv "$fresh/m" "$fresh/metrics.csv"
if "$bin" train "${model[@]}" --run-dir "$fresh" --steps 6 >"$tmp/f.out" 2>&1 && metrics_exact "$fresh" 6; then
    ok "4: a headerless file with a malformed and a cut-off line: header back, rows 1..4 kept, 5..6 appended"
else
    bad "4: repairing metrics.csv"; show "$fresh/metrics.csv"
fi
: >"$fresh/metrics.csv"
if "$bin" train "${model[@]}" --run-dir "$fresh" --steps 7 >"$tmp/f.out" 2>&1 && [ "$(head -n1 "$fresh/metrics.csv")" = "$header" ] &&
   [ "$(sed -n 2p "$fresh/metrics.csv" | cut -d, -f1)" = 7 ]; then
    ok "4: a 0-byte metrics.csv gets its header back"
else
    bad "4: 0-byte metrics.csv"; show "$fresh/metrics.csv"
fi

# ---- 5. exit 3 releases the lock ----
"$bin" train "${model[@]}" --run-dir "$tmp/stop" --steps 100000 --log-every 1 >"$tmp/s.out" 2>"$tmp/s.err" &
p=$!
started+=("$p")
for ((i = 0; i < 1500; i++)); do [ "$(rows "$tmp/stop")" -ge 3 ] && break; sleep 0.02; done
kill -TERM "$p"
wait "$p"
rc=$?
if [ $rc -eq 3 ] && [ ! -e "$tmp/stop/.lock" ]; then ok "5: SIGTERM: exit 3 and no .lock left"
else bad "5: SIGTERM: exit $rc, .lock $([ -e "$tmp/stop/.lock" ] && echo left || echo gone)"; show "$tmp/s.err"; fi

[ $failed -eq 0 ] && echo "run_dir: all checks passed"
exit $failed
