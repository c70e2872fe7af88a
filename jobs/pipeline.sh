#!/usr/bin/env bash
# pipeline.sh: submit a training job and a sampling job that starts only once
# the training has finished successfully (--dependency=afterok). A training
# job that is preempted and requeues itself keeps its job id, so the
# sampling job waits through any number of restarts.
#
#   DATA=data.h5 RUN_DIR=runs/a STEPS=20000 N=64 jobs/pipeline.sh [SBATCH_OPTION...]
#
# The variables of train.sbatch and sample.sbatch (see the top of each) are
# read from the environment and passed to both jobs (sbatch --export=ALL),
# except EXTRA_ARGS: give the trainer's extra options as TRAIN_EXTRA_ARGS and
# the sampler's as SAMPLE_EXTRA_ARGS.
# SBATCH_OPTIONs (e.g. -n 4 --time=02:00:00 --partition=p) go to both jobs;
# TRAIN_SBATCH_ARGS and SAMPLE_SBATCH_ARGS (split on blanks) to one of them.
# LOG_DIR is where the job logs go [.]: ncsn-train-JOBID.log,
# ncsn-sample-JOBID.log.
#
# Prints `train_job=ID` and `sample_job=ID`.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log_dir=${LOG_DIR:-.}

if [[ -z ${DATA:-} || -z ${RUN_DIR:-} ]]; then
    echo "pipeline.sh: DATA and RUN_DIR must be set (e.g. DATA=d.h5 RUN_DIR=runs/a $0)" >&2
    exit 2
fi
mkdir -p "$log_dir"

if [[ -n ${EXTRA_ARGS:-} ]]; then
    echo "pipeline.sh: EXTRA_ARGS is ambiguous here; use TRAIN_EXTRA_ARGS and SAMPLE_EXTRA_ARGS" >&2
    exit 2
fi

# Pass everything the job scripts read, even variables set but not exported.
export DATA RUN_DIR
for v in NCSN STEPS BATCH LR SEED CKPT_EVERY KEEP RESUME SRUN_ARGS \
    MODEL OUT N IMAGE_SIZE STEPS_EACH PNG; do
    if [[ -n ${!v+x} ]]; then export "${v?}"; fi
done
read -r -a train_extra <<<"${TRAIN_SBATCH_ARGS:-}"
read -r -a sample_extra <<<"${SAMPLE_SBATCH_ARGS:-}"

# EXTRA_ARGS goes through the environment, not --export=...,EXTRA_ARGS=...,
# because option values such as --dilations 1,2,4,8 contain commas.
train_id=$(EXTRA_ARGS=${TRAIN_EXTRA_ARGS:-} sbatch --parsable --export=ALL \
    --output="$log_dir/ncsn-train-%j.log" "$@" "${train_extra[@]}" "$here/train.sbatch")
train_id=${train_id%%;*}
echo "train_job=$train_id"

sample_id=$(EXTRA_ARGS=${SAMPLE_EXTRA_ARGS:-} sbatch --parsable --export=ALL \
    --output="$log_dir/ncsn-sample-%j.log" --dependency="afterok:$train_id" \
    --kill-on-invalid-dep=yes "$@" "${sample_extra[@]}" "$here/sample.sbatch") || {
    echo "pipeline.sh: submitting the sampling job failed; training job $train_id stays queued" >&2
    exit 1
}
sample_id=${sample_id%%;*}
echo "sample_job=$sample_id"
