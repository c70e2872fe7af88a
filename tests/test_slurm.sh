#!/usr/bin/env bash
# test_slurm.sh: preempt-and-resume of a training job on a one-machine Slurm.
#
#   tests/test_slurm.sh [--fake] BUILD_DIR SOURCE_DIR
#
# Starts a private Slurm (scripts/slurm_local.sh) in a temporary directory,
# trains a tiny model once without interruption (mpirun -np 2) as the
# reference, then submits the same training through jobs/pipeline.sh (2
# tasks, sampling chained with afterok), sends the running job SIGUSR1 the
# way a preemption would (scancel --batch --signal=USR1), and checks that the
# job requeued itself, resumed from its checkpoint, finished, that its
# /model weights are bitwise identical to the reference run's, and that the
# sampling job wrote its samples file.
#
# --fake replaces ncsn with a small stand-in (a bash script that counts
# steps, checkpoints, and exits 3 on SIGUSR1), to test the Slurm side alone.
# It also checks that an exit status other than 3 fails the job.
#
# Exit 0 pass, 1 fail, 77 skip (no Slurm, no mpirun, or not root). Must run
# as root (it starts munged, slurmctld and slurmd). Knobs: NCSN_TEST_STEPS,
# NCSN_TEST_CKPT_EVERY, NCSN_TEST_TIMEOUT (seconds for the whole test),
# NCSN_TEST_KEEP=1 keeps the temporary directory.

set -uo pipefail

readonly SKIP=77
PY=/usr/bin/python3
T0=$SECONDS
DEADLINE=${NCSN_TEST_TIMEOUT:-345}

fake=0
if [[ ${1:-} == --fake ]]; then
    fake=1
    shift
fi
if (($# != 2)); then
    echo "usage: $0 [--fake] BUILD_DIR SOURCE_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd) || exit 2
SRC=$(cd "$2" && pwd) || exit 2

stage() { printf '== [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }
skip() { echo "SKIP: $*"; exit "$SKIP"; }

tmp=""
state=""
train_job=""
sample_job=""

dump() {
    [[ -n $tmp ]] || return 0
    echo "----- diagnostics -----"
    local f j
    for j in $train_job $sample_job; do
        echo "--- scontrol show job $j"
        scontrol show job "$j" 2>&1 | head -n 40
    done
    for f in "$tmp"/logs/*.log "$tmp"/ref.log; do
        [[ -f $f ]] || continue
        echo "--- $f (last 60 lines)"
        tail -n 60 "$f"
    done
    for f in "$tmp"/run-slurm/metrics.csv "$tmp"/run-ref/metrics.csv; do
        [[ -f $f ]] || continue
        echo "--- $f (last 5 lines)"
        tail -n 5 "$f"
    done
    echo "--- ls $tmp/run-slurm"
    ls -l "$tmp/run-slurm" 2>&1 | tail -n 20
    for f in "$state"/log/slurmctld.log "$state"/log/slurmd.log; do
        [[ -f $f ]] || continue
        echo "--- $f (last 30 lines)"
        tail -n 30 "$f"
    done
}

fail() {
    echo "FAIL: $*"
    dump
    exit 1
}

cleanup() {
    local rc=$?
    if [[ -n $state && -d $state ]]; then
        "$SRC/scripts/slurm_local.sh" stop "$state" || echo "warning: stopping Slurm failed"
    fi
    if [[ -n $tmp ]]; then
        if ((rc == 0)) && [[ -z ${NCSN_TEST_KEEP:-} ]]; then
            rm -rf "$tmp"
        else
            echo "kept $tmp"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT
trap 'echo "terminated"; exit 143' TERM

# wait_for DESC TIMEOUT CMD...: poll CMD once a second until it succeeds.
wait_for() {
    local desc=$1 timeout=$2 t=$SECONDS
    shift 2
    until "$@"; do
        ((SECONDS - t < timeout)) || fail "timed out after ${timeout}s waiting for $desc"
        ((SECONDS - T0 < DEADLINE)) || fail "the whole test exceeded ${DEADLINE}s waiting for $desc"
        sleep 1
    done
}

job_field() { scontrol show job -o "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | head -n 1 | cut -d= -f2; }
job_state() { job_field "$1" JobState; }

# job_done JOBID: true once the job completed; fails the test if it ended
# any other way.
job_done() {
    local s
    s=$(job_state "$1")
    case $s in
        COMPLETED) return 0 ;;
        PENDING | RUNNING | CONFIGURING | COMPLETING | REQUEUED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | SUSPENDED | "")
            return 1 ;;
        *) fail "job $1 ended in state $s (reason $(job_field "$1" Reason), exit code $(job_field "$1" ExitCode))" ;;
    esac
}

# ----- preconditions -----
for tool in slurmctld slurmd munged sbatch srun scontrol mpirun; do
    command -v "$tool" >/dev/null || skip "$tool not installed"
done
[[ $(id -u) == 0 ]] || skip "must run as root to start munged, slurmctld and slurmd"
"$PY" -c 'import h5py, numpy' 2>/dev/null || fail "$PY cannot import h5py and numpy (python3-h5py, python3-numpy)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ncsn-test-slurm.XXXXXX") || fail "mktemp failed"
state=$tmp/slurm
mkdir -p "$tmp/logs"

if ((fake)); then
    NCSN=$tmp/fake-ncsn
    steps=${NCSN_TEST_STEPS:-60}
    ckpt_every=${NCSN_TEST_CKPT_EVERY:-5}
    # The stand-in keeps its state as text; its "model" is a checksum of
    # every step it ran, so a lost or repeated step changes /model/w.
    cat >"$NCSN" <<'EOF'
#!/bin/bash
# Stand-in for `ncsn train|sample` with the same exit statuses and files.
set -u
sub=$1; shift
run_dir="" steps=100 every=10 out="" n=4
while (($#)); do
    case $1 in
        --run-dir) run_dir=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --ckpt-every) every=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --n) n=$2; shift 2 ;;
        *) shift ;;
    esac
done
rank=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-0}}
py=/usr/bin/python3
case $sub in
train)
    [[ -n ${FAKE_NCSN_FAIL:-} ]] && { echo "fake ncsn: bad input" >&2; exit 2; }
    stop=0
    trap 'stop=1' USR1 TERM
    mkdir -p "$run_dir"
    step=0 acc=1
    if [[ -e $run_dir/latest.h5 ]]; then
        read -r step acc <"$run_dir/latest.h5"
        ((rank == 0)) && echo "resuming from $(readlink "$run_dir/latest.h5") at step $step"
    fi
    ((rank == 0)) && [[ ! -e $run_dir/metrics.csv ]] && echo "step,acc" >"$run_dir/metrics.csv"
    ckpt() {
        ((rank == 0)) || return 0
        local name
        name=$(printf 'ckpt-%08d.h5' "$step")
        echo "$step $acc" >"$run_dir/.$name.tmp" && mv "$run_dir/.$name.tmp" "$run_dir/$name"
        ln -sfn "$name" "$run_dir/.latest.tmp" && mv -Tf "$run_dir/.latest.tmp" "$run_dir/latest.h5"
    }
    while ((step < steps)); do
        sleep "${FAKE_NCSN_STEP_S:-0.2}"
        step=$((step + 1))
        acc=$(((acc * 48271 + step) % 2147483647))
        ((rank == 0)) && echo "$step,$acc" >>"$run_dir/metrics.csv"
        ((every > 0 && step % every == 0)) && ckpt
        if ((stop)); then
            ckpt
            echo "fake ncsn rank $rank: stop requested, checkpointed step $step, exiting 3"
            exit 3
        fi
    done
    ckpt
    if ((rank == 0)); then
        "$py" -c 'import sys, h5py, numpy as np
a = int(sys.argv[2])
with h5py.File(sys.argv[1], "w") as f:
    f["model/w"] = np.array([a % 65536, a // 65536], dtype=np.float32)
    f["model/sigmas"] = np.array([1.0, 0.1], dtype=np.float32)' "$run_dir/model.h5" "$acc" || exit 1
    fi
    exit 0 ;;
sample)
    if ((rank == 0)); then
        "$py" -c 'import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["samples"] = np.zeros((int(sys.argv[2]), 1, 8, 8), dtype=np.float32)' "$out" "$n" || exit 1
    fi
    exit 0 ;;
*) echo "fake ncsn: unknown command $sub" >&2; exit 2 ;;
esac
EOF
    chmod +x "$NCSN"
else
    NCSN=$BUILD/ncsn
    steps=${NCSN_TEST_STEPS:-600}
    ckpt_every=${NCSN_TEST_CKPT_EVERY:-25}
    [[ -x $NCSN ]] || fail "no ncsn executable at $NCSN"
    help=$("$NCSN" train --help 2>&1)
    grep -q -- '--run-dir' <<<"$help" || fail "'$NCSN train --help' shows no training options: $help"
fi

# Tiny model, tiny images; the same options for the reference and the job.
seed=7
batch=8
model_opts="--in-channels 1 --nf 8 --num-classes 4 --sigma-begin 1 --sigma-end 0.01 --log-every 100"
((fake)) && model_opts=""
read -r -a model_args <<<"$model_opts"

# ----- Slurm -----
stage "starting Slurm in $state"
out=$("$SRC/scripts/slurm_local.sh" start "$state" 2>"$tmp/slurm_local.err")
rc=$?
cat "$tmp/slurm_local.err"
((rc == 0)) || fail "Slurm could not start (scripts/slurm_local.sh start exited $rc)"
eval "$out"
[[ -n ${SLURM_CONF:-} && -f $SLURM_CONF ]] || fail "slurm_local.sh printed no SLURM_CONF: $out"
stage "Slurm is up: $(sinfo -h -N -o '%N %t %c CPUs')"

# ----- data -----
data=$tmp/data.h5
fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if ((!fake)) && [[ -f $SRC/scripts/ncsn_convert.py && -f $fmnist ]] &&
    "$PY" "$SRC/scripts/ncsn_convert.py" --format idx "$fmnist" --out "$data" --size 8 --limit 512 \
        >"$tmp/convert.log" 2>&1; then
    stage "dataset: 512 Fashion-MNIST images at 8x8 via scripts/ncsn_convert.py"
else
    ((fake)) || { echo "(ncsn_convert.py unavailable or failed:"; cat "$tmp/convert.log" 2>/dev/null; echo ")"; }
    "$PY" -c 'import sys, h5py, numpy as np
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:8, 0:8]
imgs = np.stack([(127 + 100 * np.sin(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1))
                  + rng.normal(0, 10, (8, 8))).clip(0, 255) for _ in range(512)]).astype(np.uint8)
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = imgs' "$data" || fail "could not write the dataset $data"
    stage "dataset: 512 synthetic 8x8 images written with h5py"
fi

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE

# ----- reference: uninterrupted, plain mpirun -----
stage "reference run: mpirun -np 2, $steps steps"
t=$SECONDS
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 180 \
    mpirun -np 2 --oversubscribe "$NCSN" train --data "$data" --run-dir "$tmp/run-ref" \
    --steps "$steps" --batch "$batch" --seed "$seed" --ckpt-every "$ckpt_every" \
    "${model_args[@]}" >"$tmp/ref.log" 2>&1
rc=$?
((rc == 0)) || fail "reference training exited $rc"
[[ -f $tmp/run-ref/model.h5 ]] || fail "reference run wrote no $tmp/run-ref/model.h5"
stage "reference run done in $((SECONDS - t))s"

# ----- the Slurm pipeline -----
run=$tmp/run-slurm
stage "submitting jobs/pipeline.sh (2 tasks)"
ids=$(cd "$tmp" && DATA=$data RUN_DIR=$run NCSN=$NCSN STEPS=$steps BATCH=$batch SEED=$seed \
    CKPT_EVERY=$ckpt_every TRAIN_EXTRA_ARGS=$model_opts LOG_DIR=$tmp/logs \
    OUT=$run/samples.h5 N=8 IMAGE_SIZE=8 STEPS_EACH=3 \
    "$SRC/jobs/pipeline.sh" -n 2 2>&1) || fail "pipeline.sh failed: $ids"
echo "$ids"
train_job=$(sed -n 's/^train_job=//p' <<<"$ids")
sample_job=$(sed -n 's/^sample_job=//p' <<<"$ids")
[[ $train_job =~ ^[0-9]+$ && $sample_job =~ ^[0-9]+$ ]] || fail "could not read job ids from: $ids"
train_log=$tmp/logs/ncsn-train-$train_job.log

is_running() { [[ $(job_state "$train_job") == RUNNING ]]; }
# Progress: some metrics rows and at least one checkpoint, so the resume
# starts from a checkpoint and not from scratch.
has_progress() {
    local s
    s=$(job_state "$train_job")
    [[ $s == RUNNING ]] || fail "training job $train_job left RUNNING ($s) before it could be preempted; raise NCSN_TEST_STEPS"
    [[ -f $run/metrics.csv ]] && (($(wc -l <"$run/metrics.csv") >= 3)) && compgen -G "$run/ckpt-*.h5" >/dev/null
}
wait_for "training job $train_job to start" 60 is_running
stage "job $train_job running"
wait_for "training progress (metrics rows and a checkpoint in $run)" 120 has_progress
stage "progress: $(tail -n 1 "$run/metrics.csv" | cut -d, -f1) steps, checkpoints: $(cd "$run" && echo ckpt-*.h5)"

stage "preempting: scancel --batch --signal=USR1 $train_job"
scancel --batch --signal=USR1 "$train_job" || fail "scancel --signal=USR1 failed"

restarted() {
    grep -q 'SLURM_RESTART_COUNT=[1-9]' "$train_log" 2>/dev/null && return 0
    local s
    s=$(job_state "$train_job")
    [[ $s == COMPLETED ]] && fail "training job $train_job completed without requeueing (did the USR1 reach the trainer?)"
    return 1
}
wait_for "job $train_job to requeue and restart" 150 restarted
stage "job $train_job restarted (restarts: $(job_field "$train_job" Restarts))"
grep -q 'requeueing job' "$train_log" || fail "train.sbatch did not report a requeue"

wait_for "training job $train_job to complete" 200 job_done "$train_job"
# Output of the restarted trainer may sit in its stdout buffer until it exits.
grep -Eq 'resum(ed|ing) ' "$train_log" || fail "the restarted trainer did not report resuming from a checkpoint"
stage "training job completed: $(grep -E 'resum(ed|ing) ' "$train_log" | tail -n 1)"
wait_for "sampling job $sample_job to complete" 120 job_done "$sample_job"
stage "sampling job $sample_job completed"

# ----- checks -----
[[ -f $run/model.h5 ]] || fail "the Slurm run wrote no $run/model.h5"
stage "comparing /model of $run/model.h5 with the reference"
"$PY" - "$tmp/run-ref/model.h5" "$run/model.h5" <<'EOF' || fail "the resumed run's /model differs from the uninterrupted run's"
import sys
import h5py
import numpy as np

def datasets(path):
    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()]
        f["model"].visititems(visit)
    return found

ref, got = datasets(sys.argv[1]), datasets(sys.argv[2])
if set(ref) != set(got):
    print("dataset names differ: only in reference", sorted(set(ref) - set(got))[:5],
          "only in resumed", sorted(set(got) - set(ref))[:5])
    sys.exit(1)
differ = []
for name in sorted(ref):
    a, b = np.asarray(ref[name]), np.asarray(got[name])
    if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
        differ.append(name)
        if len(differ) <= 5:
            d = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) if a.shape == b.shape else "shape"
            print(f"  {name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}, max |diff| {d}")
values = sum(np.asarray(v).size for v in ref.values())
print(f"{len(ref)} datasets, {values} values under /model: "
      + ("bitwise identical" if not differ else f"{len(differ)} differ"))
sys.exit(1 if differ else 0)
EOF

[[ -f $run/samples.h5 ]] || fail "the sampling job wrote no $run/samples.h5"
"$PY" -c 'import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    s = f["samples"][()]
assert s.ndim == 4 and s.shape[0] == 8 and np.isfinite(s).all(), s.shape
print("samples", s.dtype, list(s.shape))' "$run/samples.h5" || fail "bad samples file $run/samples.h5"

# ----- fake only: a failing trainer fails the job -----
if ((fake)); then
    stage "a trainer that exits 2 must fail the job"
    bad_job=$(cd "$tmp" && FAKE_NCSN_FAIL=1 DATA=$data RUN_DIR=$tmp/run-bad NCSN=$NCSN \
        sbatch --parsable --export=ALL -n 2 --output="$tmp/logs/ncsn-bad-%j.log" "$SRC/jobs/train.sbatch") ||
        fail "sbatch of the failing job failed"
    bad_ended() {
        local s
        s=$(job_state "$bad_job")
        case $s in
            PENDING | RUNNING | CONFIGURING | COMPLETING | "") return 1 ;;
        esac
        [[ $s == FAILED && $(job_field "$bad_job" ExitCode) == 2:0 ]] ||
            fail "failing job $bad_job ended $s with exit code $(job_field "$bad_job" ExitCode), expected FAILED 2:0"
    }
    wait_for "failing job $bad_job to end" 60 bad_ended
    stage "job $bad_job: FAILED, exit code 2:0"
fi

stage "PASS$( ((fake)) && echo ' (fake trainer)')"
