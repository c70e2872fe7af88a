#!/usr/bin/env bash
# quickstart.sh [RUN_ROOT]: the main job on a built-in default, from nothing:
# installs and builds (scripts/setup.sh), converts Fashion-MNIST (Debian's
# dataset-fashion-mnist) to 16x16, trains a small NCSN across 2 MPI ranks
# for a few minutes, samples with the EMA weights across 2 ranks, evaluates
# the samples against held-out images, and writes pictures:
#   RUN_ROOT/compare.png   generated samples beside real training images
#   RUN_ROOT/samples.png   the samples alone;  RUN_ROOT/run/loss.png  the loss
# Knobs (environment): STEPS (800), NF (16), SIZE (16), BATCH (64), TRAIN_N
# (10000), SAMPLES (64), STEPS_EACH (30); SETUP=0 skips scripts/setup.sh
# (no install, no build) and NCSN=PATH runs that binary instead of build/ncsn.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath -m "${1:-$SRC/runs/quickstart}")
STEPS=${STEPS:-800} NF=${NF:-16} SIZE=${SIZE:-16} BATCH=${BATCH:-64}
TRAIN_N=${TRAIN_N:-10000} SAMPLES=${SAMPLES:-64} STEPS_EACH=${STEPS_EACH:-30}
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
"${MPI[@]}" "$NCSN" train --data "$ROOT/train.h5" --run-dir "$ROOT/run" --in-channels 1 --nf "$NF" --num-classes 10 \
    --batch "$BATCH" --steps "$STEPS" --lr 1e-3 --ema 0.999 --ckpt-every 200 --log-every 50

echo "== sample: $SAMPLES samples on 2 ranks with the EMA weights"
"${MPI[@]}" "$NCSN" sample --model "$ROOT/run/model.h5" --ema --out "$ROOT/samples.h5" \
    --png "$ROOT/samples.png" --n "$SAMPLES" --image-size "$SIZE" --steps-each "$STEPS_EACH" --denoise

echo "== evaluate against held-out images"
$PY "$SRC/scripts/ncsn_eval.py" "$ROOT/samples.h5" --data "$ROOT/heldout.h5" --store

echo "== pictures"
$PY "$SRC/scripts/data_grid.py" --beside "$ROOT/samples.h5:samples" "$ROOT/train.h5:images" \
    --n "$SAMPLES" --out "$ROOT/compare.png"
$PY "$SRC/scripts/plot_loss.py" "$ROOT/run"
echo "done in $(( $(date +%s) - t0 )) s. Run dir: $ROOT/run"
echo "pictures: $ROOT/compare.png (samples beside real images), $ROOT/samples.png, $ROOT/run/loss.png"
