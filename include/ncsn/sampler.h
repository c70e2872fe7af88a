/* sampler.h: the distributed annealed sampler, shared by `ncsn sample` and
 * by `ncsn train --sample-every`.
 *
 * Annealed Langevin dynamics (DESIGN.md 3), consistent annealed sampling
 * (Jolicoeur-Martineau et al. 2021), or Heun's deterministic steps of the
 * probability-flow ODE between the levels (Karras et al. 2022). The N samples are split across ranks:
 * rank r of R runs [r*N/R, (r+1)*N/R) in micro-batches. Sample k starts
 * from a draw of (seed, k) (or row k of an initial tensor), and its noise at
 * global step g = level * T + step is a draw of (seed, g, k); every
 * operation of the network is per sample, so the result does not depend on
 * the rank count or the micro-batch. */
#ifndef NCSN_SAMPLER_H
#define NCSN_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "ncsn/dist.h"
#include "ncsn/model.h"

typedef enum { SAMPLER_ALS, SAMPLER_CAS, SAMPLER_HEUN } SamplerKind;

/* The settings of one sampling run. */
typedef struct {
    long n;
    Shape img;        /* N = 1 */
    SamplerKind kind;
    long steps_each;  /* ALS: steps per level; CAS, Heun: 1 */
    double step_lr;   /* eps, given or chosen by NCSNv2's technique 4 */
    int step_lr_auto;
    double eta;       /* CAS: eps / sigma_L^2 */
    int clip, denoise, normal_init;
    int trajectory;   /* keep the state after each level */
    long micro_batch; /* samples per forward pass on a rank (the result does not depend on it) */
    int keep_weights; /* keep the transformed conv weights for the run (ModelRun.keep_weights; same result) */
    uint64_t seed;
    const float *init;         /* [n, C, H, W] or NULL */
    const float *known, *mask; /* inpainting: [n_known, C, H, W], n_known is 1 or n */
    long n_known, n_mask;
} Sampler;

/* The sampler as the options give it. `prefix` is put before the option
 * names in messages: "" for `ncsn sample --sampler`, "sample-" for
 * `ncsn train --sample-sampler`. */
typedef struct {
    const char *kind;    /* "als", "cas" or "heun" */
    long steps_each;
    int steps_each_given;
    const char *step_lr; /* a number or "auto" */
    int step_lr_given;   /* heun takes none */
    const char *prefix;
} SamplerOptions;

/* "als", "cas" or "heun": the --sampler value and the samples file's
 * attribute. */
const char *sampler_name(SamplerKind kind);

/* Fills S->kind, steps_each, step_lr (technique 4 for auto), step_lr_auto
 * and eta for the levels sigmas[L], and a one-line description. Usage
 * errors exit 2 naming the option and, for CAS, the bounds on eta. */
void sampler_setup(Sampler *S, const SamplerOptions *so, const float *sigmas, int L, char *desc, size_t cap);

/* Every rank: runs S with the weights of m (m->sigmas set). Rank 0 gets all
 * samples in `all` [n, C, H, W] and, with S->trajectory, `traj_all`
 * [L, n, C, H, W]; other ranks pass NULL. With `progress`, rank 0 prints
 * progress per level. Uses a ModelRun of its own. Returns the seconds from
 * the start to the end of the gather. */
double sampler_run(const Sampler *S, Model *m, const Dist *d, int progress, float *all, float *traj_all);

/* Where the samples came from, stored as attributes of /samples. */
typedef struct {
    const char *model;   /* the model file, or the run directory */
    const char *weights; /* "ema" or "model" */
    const char *init;    /* the --init file or the initial distribution */
    const char *inpaint, *mask; /* or NULL */
    long step;           /* the training step (-1: not stored) */
} SamplesSource;

/* Rank 0: writes the samples file atomically: /samples [n, C, H, W] with the
 * settings, seed, sigmas and source as attributes, and /trajectory
 * [L, n, C, H, W] when traj is not NULL. */
void sampler_write(const char *path, const Sampler *S, const Model *m, const SamplesSource *src,
                   const float *all, const float *traj);

#endif
