/* train_plan.h: how a training run starts: from a checkpoint of its run
 * directory (the resume policy of --resume), or fresh from the model
 * options or a --model file, with noise levels from the options, the file
 * or the data (noise_levels.h). */
#ifndef NCSN_TRAIN_PLAN_H
#define NCSN_TRAIN_PLAN_H

#include "ncsn/cli.h"
#include "ncsn/train.h"

/* Every rank, after s->dist and s->data are set: rank 0 decides, every
 * rank gets its model, Adam moments, EMA weights (with --ema), noise levels
 * and s->meta.sigma_rule. Returns the step to start from. Refusals exit 2
 * on every rank with one line (a checkpoint of another model or dataset,
 * noise-level options a resume would ignore, --resume none in a directory
 * that holds checkpoints). */
long train_plan(TrainState *s, const Options *o);

#endif
