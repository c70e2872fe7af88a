/* train_samples.h: pictures and a quality number while training
 * (`ncsn train --sample-every K [--eval-data FILE]`).
 *
 * Every K optimizer steps all ranks run the sampler of `ncsn sample`
 * (sampler.h) with the weights of that step (the EMA weights when EMA is
 * on) on a copy of the model and a ModelRun of its own, so the training's
 * buffers, and with them its trajectory, are untouched. The seed is the
 * run's --seed at every step, so successive pictures start from the same
 * noise. Rank 0 writes RUN_DIR/samples/step-<step>.h5 and .png and, with
 * --eval-data, runs the evaluation script (evaluator.h) and appends a row
 * to RUN_DIR/eval.csv. A failed evaluation is a warning, never the end of
 * the run. */
#ifndef NCSN_TRAIN_SAMPLES_H
#define NCSN_TRAIN_SAMPLES_H

#include <stdint.h>

#include "ncsn/data.h"
#include "ncsn/dist.h"
#include "ncsn/evaluator.h"
#include "ncsn/model.h"
#include "ncsn/sampler.h"

typedef struct {
    long every;             /* K; 0: off */
    long n;                 /* samples per picture */
    SamplerOptions sampler; /* --sample-sampler, --sample-steps-each, --sample-step-lr */
    int clip;
    uint64_t seed;
    int use_ema;            /* sample with the EMA weights */
    const char *run_dir;
    const char *eval_data;  /* held-out labelled images; NULL: no evaluation */
    const char *train_data; /* the run's --data: the evaluation's classifier trains on it */
    const char *dataset;    /* the image dataset's name in both files */
} TrainSamplesConfig;

typedef struct {
    TrainSamplesConfig c;
    Dist d;
    Sampler S;
    Model m;      /* the weights of the step being sampled; no gradients */
    char desc[512];
    Evaluator ev; /* rank 0, with eval_data */
} TrainSamples;

/* Every rank, after the model is known and before the first step: checks
 * the options, the held-out file and (rank 0) the evaluator, and exits 2 on
 * every rank with a message when something is wrong; data is the open
 * training dataset. Off (every = 0), only checks the options. */
void train_samples_init(TrainSamples *ts, const TrainSamplesConfig *c, const Model *model,
                        const Dataset *data, const Dist *d);
void train_samples_free(TrainSamples *ts);

/* Every rank, when the run starts at step `start`: rank 0 drops the samples
 * files and eval.csv rows of later steps (the part of an interrupted run
 * that is redone), and when start is a multiple of K whose samples or
 * evaluation are missing (a run stopped right there), samples them now
 * from `weights`. */
void train_samples_start(TrainSamples *ts, long start, const float *weights);

/* Every rank, after step `step`: samples from `weights` (laid out like the
 * model's parameters) when step is a multiple of K; returns whether it did. */
int train_samples_at(TrainSamples *ts, long step, const float *weights);

#endif
