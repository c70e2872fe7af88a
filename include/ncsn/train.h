/* train.h: the training loop of `ncsn train`: annealed DSM, data-parallel
 * over MPI (DESIGN.md 2 and 6).
 *
 * The loop sees a TrainConfig (what the options decided for it) and the
 * TrainState every rank holds; the command (cmd_train.c) builds both, and
 * the run plan (train_plan.h) fills the model, its moments and the step to
 * start from. */
#ifndef NCSN_TRAIN_H
#define NCSN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "ncsn/ckpt.h"
#include "ncsn/data.h"
#include "ncsn/dist.h"
#include "ncsn/model.h"
#include "ncsn/optim.h"
#include "ncsn/train_samples.h"

typedef struct {
    long steps;                /* total optimizer steps of the run */
    long batch;                /* global batch B, split across ranks */
    long micro_batch;          /* samples per pass on a rank; 0: automatic (train_micro_batch) */
    uint64_t seed;             /* of every random draw */
    AdamConfig adam;
    double grad_clip;          /* global gradient norm bound; 0: off */
    double ema_rate;           /* 0: no EMA */
    int ema_warmup;            /* rate min(ema_rate, (1+t)/(10+t)) */
    long bucket_mb;            /* allreduce bucket; 0: one bucket */
    long ckpt_every, keep;     /* checkpoint every K steps (0: at the end); keep the K newest */
    const long *milestones;    /* checkpoints never deleted */
    int n_milestones;
    long log_every;            /* a progress line every K steps; 0: about 20 */
    long sample_every;         /* --sample-every (the loop only ends its bar line) */
    const char *run_dir;
    const char *dump_grads;    /* debugging: a directory for each step's gradient, or NULL */
    const char *options_text;  /* the resolved options, stored in every checkpoint */
} TrainConfig;

/* What every rank holds for the run. */
typedef struct {
    Dist dist;
    Dataset data;
    DataOrder order;
    Model model;
    OptimState opt;       /* Adam moments, and EMA weights when on */
    TrainMeta meta;       /* what checkpoints record besides the weights */
    TrainSamples samples; /* --sample-every */
} TrainState;

/* Samples per forward/backward pass of a rank whose share of the batch is
 * `share` images of shape `image` (its N is ignored): --micro-batch when
 * given; else the whole share, unless that share's activations would
 * exceed TRAIN_AUTO_PASS_BYTES, when passes of ops_pass_samples(). At nf
 * 128, 32x32, batch 8 on 1 rank that takes the peak memory from 1,074 to
 * 666 MB at the same step time on 1 thread, about 5 % slower on 2
 * (docs/performance.md); small networks keep one pass, where passes of 4
 * cost about 8 %. The
 * gradients of the passes add up, so the result differs from one pass
 * only in the order of the sums. */
#define TRAIN_AUTO_PASS_BYTES (256.0 * 1024 * 1024)
long train_micro_batch(const TrainConfig *c, const NcsnConfig *cfg, Shape image, long share);
/* Adam moments (zero) and, with EMA, the EMA buffer, laid out like the
 * parameters of s->model; and their release. */
void train_optim_alloc(TrainState *s, int with_ema);
void train_optim_free(TrainState *s);

/* Every rank: steps start .. c->steps, checkpoints, pictures, the final
 * model. *stop is the signal number a handler stored (0: none); the ranks
 * agree on it once per step. Returns 0, or NCSN_EXIT_STOPPED after writing
 * a checkpoint on a stop signal. */
int train_loop(const TrainConfig *c, TrainState *s, long start, const volatile sig_atomic_t *stop);

#endif
