#!/bin/bash
# portable.sh: the portable build (the default) against the native one
# (-DNCSN_NATIVE=ON, -march=native) on this machine, in one run.
#
# usage: bench/portable.sh [--quick]
#
# Configures and builds both variants, each in its own build directory
# (PORTABLE_BUILD, default build/; NATIVE_BUILD, default build-native/;
# an existing build is brought up to date), then runs bench/bench_net of
# both at the same time, one process each, ROUNDS times: on a machine that
# others share, the two then see the same load, which changes from minute
# to minute (run one after the other, a build's time varied by 20 % from
# round to round). bench_net times, on the default network (nf 128,
# 3 x 32 x 32, batch 8):
#   sampling step:  the forward pass, the network's share of a Langevin step
#   training step:  the forward and backward passes of the DSM loss (Adam,
#                   an element-wise pass over the parameters, is left out)
# in process CPU time, REPS repetitions per run, and prints the fastest.
# Printed: the median over rounds of portable / native within a round
# (1.00 = the same speed, 1.05 = the portable build 5 % slower), each
# round's ratio, and the ratio of the fastest times over all rounds.
#
# --quick: nf 32, 2 rounds of 2 repetitions (a smoke test of the script).
# Environment: ROUNDS (5), REPS (3), OMP_NUM_THREADS (1),
# PORTABLE_BUILD, NATIVE_BUILD. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
# left as set: both variants call the same OpenBLAS.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
NF=128 ROUNDS=${ROUNDS:-5} REPS=${REPS:-3}
for a in "$@"; do
    case $a in
    --quick) NF=32 ROUNDS=2 REPS=2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "portable.sh: unknown option '$a' (expected --quick)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORTABLE=${PORTABLE_BUILD:-$ROOT/build}
NATIVE=${NATIVE_BUILD:-$ROOT/build-native}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

for v in portable native; do
    dir=$PORTABLE flag=OFF
    [ $v = native ] && dir=$NATIVE flag=ON
    echo "building the $v variant in $dir (-DNCSN_NATIVE=$flag)"
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DNCSN_NATIVE=$flag >/dev/null
    cmake --build "$dir" -j2 --target bench_net >/dev/null
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portable.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# copies, so that a rebuild during the run cannot mix versions
cp "$PORTABLE/bench/bench_net" "$WORK/portable"
cp "$NATIVE/bench/bench_net" "$WORK/native"

# run VARIANT ROUND: bench_net's fastest CPU seconds "forward fwd+bwd" into $WORK/VARIANT.ROUND
run() {
    "$WORK/$1" "$NF" 3 32 8 "$REPS" >"$WORK/$1.$2.log" 2>&1 || {
        echo "portable.sh: bench_net ($1) failed:" >&2
        cat "$WORK/$1.$2.log" >&2
        exit 1
    }
    sed -n 's/^process CPU time, fastest repetition: forward \([0-9.]*\) s, forward+backward \([0-9.]*\) s$/\1 \2/p' \
        "$WORK/$1.$2.log" >"$WORK/$1.$2"
    [ -s "$WORK/$1.$2" ] || { echo "portable.sh: no CPU time line from bench_net ($1)" >&2; exit 1; }
}

echo "network nf $NF, 3 x 32 x 32, batch 8, OMP_NUM_THREADS=$OMP_NUM_THREADS," \
    "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; $ROUNDS rounds of $REPS repetitions"
grep -m1 "^OpenBLAS kernels:" <("$WORK/native" 8 3 8 1 1 2>&1) || true
for r in $(seq 1 "$ROUNDS"); do
    run native "$r" &
    run portable "$r"
    wait $! || exit 1
    read -r nf nb <"$WORK/native.$r"
    read -r pf pb <"$WORK/portable.$r"
    printf '  round %d: CPU s native %s / %s, portable %s / %s (sampling / training step)\n' "$r" "$nf" "$nb" "$pf" "$pb"
done
/usr/bin/python3 - "$WORK" "$ROUNDS" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def times(v, r):
    return [float(t) for t in open(f"{work}/{v}.{r}").read().split()]
for i, name in enumerate(["sampling step (forward)", "training step (forward+backward)"]):
    nat = [times("native", r)[i] for r in range(1, rounds + 1)]
    por = [times("portable", r)[i] for r in range(1, rounds + 1)]
    q = [p / n for p, n in zip(por, nat)]
    print(f"portable / native, {name}: {statistics.median(q):.3f} (median of the rounds: "
          f"{', '.join(f'{x:.3f}' for x in q)}; fastest over all rounds {min(por) / min(nat):.3f})")
PY
