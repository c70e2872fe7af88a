#!/usr/bin/env bash
# quality.sh [OUT_DIR]: what each lever does to the samples, on Fashion-MNIST.
#
# Trains and samples a table of recipes ("rows") at each image size and
# prints, for each, the feature-space distance of its samples to held-out
# images (scripts/ncsn_eval.py --fd; lower is better, the real images' own
# distance is the floor), the classifier score, the classes holding at
# least 5 % of the samples, and the minutes spent training and sampling on
# this machine. Rows that differ only in sampling share one training run.
# Run it again and finished runs are reused (delete OUT_DIR to start over).
#
# Environment: SIZES ("16 28"), NF (16), STEPS (800), BATCH (64), TRAIN_N (10000),
# N (500 samples per row), RANKS (2), ROWS (space-separated row names; all
# by default), NCSN (build/ncsn), PYTHON (/usr/bin/python3).
# Rows (the seed's recipe first, then one lever each, then all together):
#   seed         the seed's recipe: 10 levels, fixed-rate EMA 0.999, ALS T=30 step 2e-5, clamp
#   ema-warmup   + the EMA rate min(0.999, (1+t)/(10+t))
#   plane-head   + --plane-head --grad-clip 200, sampled without the clamp
#   ph-clamp     the plane-head model sampled with the clamp
#   cin++        + --norm cin++
#   rules        + NCSNv2's levels (technique 2) and --step-lr auto at T=5
#   cas          the rules' model sampled by CAS (one step per level, eta 0.14)
#   longer       + twice the steps
#   wider        + twice nf
#   all          every lever together (plane head, cin++, the rules, CAS)
#   quickstart   all but cin++, with the cosine learning rate, batch 64 (the
#                quick start's recipe until 2026-12-07)
#   qs-2x qs-4x  that recipe with 2x and 4x the steps (its cosine stretched to
#                match): the distance against training minutes
#   pc pc-2x pc-4x  the same three with the output preconditioned
#                (--head-sigma-data 0.5)
#   qs-pc        the quick start's recipe now: pc at batch 8 for 10x the steps
#   qs-pc-4x     qs-pc with 4x the steps
# ROWS_28 (rows at 28x28; default: the seed's recipe, each lever, all
# together and the quick start's recipe: about 2.5 hours on 2 cores). Output:
# OUT_DIR/<size>/<row>/{samples.h5,samples.png,eval.json,...}, training runs
# in OUT_DIR/<size>/runs/<name>, and the table in OUT_DIR/table.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/runs/quality}")
NCSN=${NCSN:-$ROOT/build/ncsn} PY=${PYTHON:-/usr/bin/python3}
SIZES=${SIZES:-16 28} NF=${NF:-16} STEPS=${STEPS:-800} BATCH=${BATCH:-64} TRAIN_N=${TRAIN_N:-10000}
N=${N:-500} RANKS=${RANKS:-2}
FM=/usr/share/datasets/fashion-mnist
[ -x "$NCSN" ] || { echo "quality.sh: $NCSN is not an executable (build first)" >&2; exit 1; }
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HDF5_USE_FILE_LOCKING=FALSE OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MPI=(mpirun --oversubscribe -np "$RANKS")
mkdir -p "$OUT"

# CAS's step: eta = step_lr / sigma_L^2 = 0.14 (sigma_L = 0.01), near its
# lower bound 1 - sigma_{i+1}/sigma_i (0.13 at 16 px): the best of the
# etas 0.14-1 tried (docs/quality.md).
CAS_LR=1.4e-5

train() { # name, options...: one training run of run_size's size (D, TRAIN, BASE)
    local name=$1; shift
    local dir="$D/runs/$name"
    if [ ! -f "$dir/model.h5" ]; then
        mkdir -p "$dir"
        local t0 t1
        t0=$(date +%s.%N)
        "${MPI[@]}" "$NCSN" train --data "$TRAIN" --run-dir "$dir" "${BASE[@]}" "$@" --log-every 200 >"$dir/train.log" 2>&1 \
            || { echo "quality.sh: training $name failed, see $dir/train.log" >&2; tail -5 "$dir/train.log" >&2; exit 1; }
        t1=$(date +%s.%N)
        "$PY" -c 'import sys; print(f"{(float(sys.argv[2]) - float(sys.argv[1])) / 60:.2f}")' "$t0" "$t1" >"$dir/train_minutes"
    fi
}

run_size() { # SIZE: trains, samples and evaluates every row at that size
    local SIZE=$1 D="$OUT/$1"
    mkdir -p "$D"
    TRAIN="$D/train$SIZE.h5" HELD="$D/heldout$SIZE.h5"
    [ -f "$TRAIN" ] || "$PY" "$ROOT/scripts/ncsn_convert.py" --format idx "$FM/train-images-idx3-ubyte.gz" --labels \
        --out "$TRAIN" --size "$SIZE" --limit "$TRAIN_N" >/dev/null
    [ -f "$HELD" ] || "$PY" "$ROOT/scripts/ncsn_convert.py" --format idx "$FM/t10k-images-idx3-ubyte.gz" --labels \
        --out "$HELD" --size "$SIZE" --limit 2000 >/dev/null

    BASE=(--in-channels 1 --nf "$NF" --batch "$BATCH" --steps "$STEPS" --lr 1e-3 --ema 0.999 --ckpt-every 200)
    SEED_SAMPLE=(--steps-each 30 --step-lr 2e-5 --denoise)
    # the quick start's training options without and with the preconditioning, and its sampler
    local QS="--plane-head --grad-clip 200 --lr-schedule cosine"
    local PC="$QS --head-sigma-data 0.5" QS_SAMPLE="--sampler cas --step-lr $CAS_LR --denoise --no-clip"
    # row -> "training name|training options|sampling options"
    declare -A ROW=(
        [seed]="seed|--num-classes 10 --no-ema-warmup|${SEED_SAMPLE[*]}"
        [ema-warmup]="ema|--num-classes 10|${SEED_SAMPLE[*]}"
        [plane-head]="ph|--num-classes 10 --plane-head --grad-clip 200|${SEED_SAMPLE[*]} --no-clip"
        [ph-clamp]="ph|--num-classes 10 --plane-head --grad-clip 200|${SEED_SAMPLE[*]}"
        [cin++]="cinpp|--num-classes 10 --norm cin++|${SEED_SAMPLE[*]}"
        [rules]="rules||--steps-each 5 --step-lr auto --denoise"
        [cas]="rules||--sampler cas --step-lr $CAS_LR --denoise"
        [longer]="longer|--num-classes 10 --steps $((2 * STEPS))|${SEED_SAMPLE[*]}"
        [wider]="wider|--num-classes 10 --nf $((2 * NF))|${SEED_SAMPLE[*]}"
        [all]="all|--plane-head --grad-clip 200 --norm cin++|$QS_SAMPLE"
        [quickstart]="qs|$QS|$QS_SAMPLE"
        [qs-2x]="qs2x|$QS --steps $((2 * STEPS))|$QS_SAMPLE"
        [qs-4x]="qs4x|$QS --steps $((4 * STEPS))|$QS_SAMPLE"
        [pc]="pc|$PC|$QS_SAMPLE"
        [pc-2x]="pc2x|$PC --steps $((2 * STEPS))|$QS_SAMPLE"
        [pc-4x]="pc4x|$PC --steps $((4 * STEPS))|$QS_SAMPLE"
        [qs-pc]="qspc|$PC --batch 8 --steps $((10 * STEPS))|$QS_SAMPLE"
        [qs-pc-4x]="qspc4x|$PC --batch 8 --steps $((40 * STEPS))|$QS_SAMPLE"
    )
    ORDER=(seed ema-warmup plane-head ph-clamp cin++ rules cas longer wider all quickstart qs-2x qs-4x pc pc-2x pc-4x qs-pc qs-pc-4x)
    local rows
    if [ "$SIZE" = 16 ]; then rows=(${ROWS:-${ORDER[@]}}); else rows=(${ROWS_28:-seed plane-head ph-clamp cin++ rules cas longer wider all qs-pc}); fi

    for row in "${rows[@]}"; do
        spec=${ROW[$row]:-}
        [ -n "$spec" ] || { echo "quality.sh: unknown row '$row' (rows: ${ORDER[*]})" >&2; exit 2; }
        IFS='|' read -r tname topts sopts <<<"$spec"
        echo "== $row: train $tname ($topts), sample ($sopts)"
        train "$tname" $topts
        d="$D/$row"
        mkdir -p "$d"
        if [ ! -f "$d/eval.json" ]; then
            t0=$(date +%s.%N)
            "${MPI[@]}" "$NCSN" sample --model "$D/runs/$tname/model.h5" --ema --out "$d/samples.h5" --png "$d/samples.png" \
                --n "$N" --image-size "$SIZE" $sopts >"$d/sample.log" 2>&1 \
                || { echo "quality.sh: sampling $row failed, see $d/sample.log" >&2; tail -5 "$d/sample.log" >&2; exit 1; }
            t1=$(date +%s.%N)
            "$PY" -c 'import sys; print(f"{(float(sys.argv[2]) - float(sys.argv[1])) / 60:.2f}")' "$t0" "$t1" >"$d/sample_minutes"
            "$PY" "$ROOT/scripts/ncsn_eval.py" "$d/samples.h5" --data "$HELD" --fd --train-data "$TRAIN" \
                --json "$d/eval.json" >"$d/eval.log" 2>&1 \
                || { echo "quality.sh: evaluating $row failed, see $d/eval.log" >&2; tail -5 "$d/eval.log" >&2; exit 1; }
        fi
        cp "$D/runs/$tname/train_minutes" "$d/train_minutes"
    done
    ROWS_DONE+=("${rows[@]/#/$SIZE:}")
}

ROWS_DONE=()
for size in $SIZES; do run_size "$size"; done

"$PY" - "$OUT" "$NF" "$STEPS" "$BATCH" "$N" "$RANKS" "${ROWS_DONE[@]}" <<'PYEOF' | tee "$OUT/table.txt"
import json, sys
out, nf, steps, batch, n, ranks, rows = *sys.argv[1:7], sys.argv[7:]
print(f"Fashion-MNIST, nf {nf}, {steps} steps of {batch} (unless the row says otherwise), {ranks} ranks; "
      f"{n} samples per row; FD real = the floor ({n} real held-out images)")
print("FD: the samples clipped to [-1, 1], as their picture shows them; outside: the share of values the sampler")
print("left outside [-1, 1] (ncsn_eval.py, docs/quality.md)")
print(f"{'size':>5} {'row':<12} {'train min':>9} {'sample min':>10} {'FD':>8} {'FD real':>8} {'score':>6} {'classes>=5%':>11} "
      f"{'outside':>7}")
for item in rows:
    size, row = item.split(":", 1)
    d = f"{out}/{size}/{row}"
    e = json.load(open(f"{d}/eval.json"))
    tm = open(f"{d}/train_minutes").read().strip()
    sm = open(f"{d}/sample_minutes").read().strip()
    print(f"{size + 'px':>5} {row:<12} {tm:>9} {sm:>10} {e['fd']:8.1f} {e['fd_real']:8.2f} {e['fd_score']:6.2f} "
          f"{e['fd_coverage']:>5}/{e['fd_n_classes']:<5} {e['out_of_range_share']:7.1%}")
PYEOF
