#!/usr/bin/env bash
# quickstart.sh [RUN_ROOT]: the main job on a built-in default, from nothing:
# installs and builds (scripts/setup.sh), converts Fashion-MNIST (Debian's
# dataset-fashion-mnist) to 16x16, trains a small NCSN across 2 MPI ranks
# for a few minutes with the recipe of docs/quality.md ("The preconditioned
# output, and the quick start's recipe"), samples with the EMA weights
# across 2 ranks, scores the samples against held-out images (feature-space distance), and writes pictures:
#   RUN_ROOT/compare.png   generated samples beside real training images
#   RUN_ROOT/samples.png   the samples alone;  RUN_ROOT/run/loss.png  the loss
# Knobs (environment): STEPS (8000), NF (16), SIZE (16), BATCH (8),
# TRAIN_N (10000), SAMPLES (500), STEP_LR (1.4e-5: CAS's eta = 0.14),
# HEAD_SD (0.5: the output's preconditioning, --head-sigma-data; 0 off); SETUP=0
# skips scripts/setup.sh (no install, no build) and NCSN=PATH runs that
# binary instead of build/ncsn.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath -m "${1:-$SRC/runs/quickstart}")
STEPS=${STEPS:-8000} NF=${NF:-16} SIZE=${SIZE:-16} BATCH=${BATCH:-8}
TRAIN_N=${TRAIN_N:-10000} SAMPLES=${SAMPLES:-500} STEP_LR=${STEP_LR:-1.4e-5} HEAD_SD=${HEAD_SD:-0.5}
PY=/usr/bin/python3
FM=/usr/share/datasets/fashion-mnist

[ "${SETUP:-1}" = 0 ] || bash "$SRC/scripts/setup.sh" "$SRC/build"
NCSN=${NCSN:-$SRC/build/ncsn}
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HDF5_USE_FILE_LOCKING=FALSE
MPI=(mpirun --oversubscribe -np 2)
mkdir -p "$ROOT"
t0=$(date +%s)

echo "== data: Fashion-MNIST at ${SIZE}x${SIZE} ($TRAIN_N training images, 2000 held out)"
$PY "$SRC/scripts/ncsn_convert.py" --format idx "$FM/train-images-idx3-ubyte.gz" --labels \
    --out "$ROOT/train.h5" --size "$SIZE" --limit "$TRAIN_N"
$PY "$SRC/scripts/ncsn_convert.py" --format idx "$FM/t10k-images-idx3-ubyte.gz" --labels \
    --out "$ROOT/heldout.h5" --size "$SIZE" --limit 2000

echo "== train: 2 ranks, nf $NF, $STEPS steps of $BATCH images (resumes if run again)"
# The plane head lets the score see each image's mean and scale (a black
# background); the noise levels follow NCSNv2's rules (none given: the
# largest from the data, their number from the image size); the learning
# rate falls as a half cosine to 0 at the last step; EMA 0.999 with its
# warm-up. The output is preconditioned (every level's target of unit
# size), which is what lets many small steps pay: batch 8 for 8,000 steps
# beats batch 64 for 1,400 in the same minutes (docs/quality.md).
"${MPI[@]}" "$NCSN" train --data "$ROOT/train.h5" --run-dir "$ROOT/run" --in-channels 1 --nf "$NF" \
    --plane-head --head-sigma-data "$HEAD_SD" --grad-clip 200 --batch "$BATCH" --steps "$STEPS" --lr 1e-3 --lr-schedule cosine --ema 0.999 \
    --ckpt-every 1000 --log-every 500

echo "== sample: $SAMPLES samples on 2 ranks with the EMA weights (consistent annealed sampling)"
"${MPI[@]}" "$NCSN" sample --model "$ROOT/run/model.h5" --ema --out "$ROOT/samples.h5" \
    --png "$ROOT/samples.png" --n "$SAMPLES" --image-size "$SIZE" --sampler cas --step-lr "$STEP_LR" \
    --denoise --no-clip

echo "== evaluate against held-out images (the classifier trains once, then is cached beside train.h5)"
$PY "$SRC/scripts/ncsn_eval.py" "$ROOT/samples.h5" --data "$ROOT/heldout.h5" --fd --train-data "$ROOT/train.h5" \
    --store --json "$ROOT/eval.json"

echo "== pictures"
$PY "$SRC/scripts/data_grid.py" --beside "$ROOT/samples.h5:samples" "$ROOT/train.h5:images" \
    --n 64 --out "$ROOT/compare.png"
$PY "$SRC/scripts/plot_loss.py" "$ROOT/run"
echo "done in $(( $(date +%s) - t0 )) s. Run dir: $ROOT/run"
echo "pictures: $ROOT/compare.png (samples beside real images), $ROOT/samples.png, $ROOT/run/loss.png"
