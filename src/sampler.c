/* sampler.c: see sampler.h. The three samplers.
 *
 * ALS and CAS make, at level i, T updates x <- x + a_i s(x, i) + c_i z:
 *   ALS: T = steps_each, a_i = eps sigma_i^2/sigma_L^2, c_i = sqrt(2 a_i);
 *   CAS: T = 1, a_i = eta sigma_i^2 with eta = eps/sigma_L^2, and
 *        c_i = beta_i sigma_{i+1}, beta_i = sqrt(1 - ((1 - eta)/gamma_i)^2),
 *        gamma_i = sigma_{i+1}/sigma_i; c = 0 at the last level.
 * CAS's noise keeps the state's total noise at exactly sigma_{i+1} if the
 * score is exact: the step shrinks the sigma_i noise to (1 - eta) sigma_i,
 * and beta_i sigma_{i+1} tops it up.
 *   Heun: no noise; Heun's second-order step of the probability-flow ODE
 *        dx/dsigma = -sigma s(x, sigma) from each level to the next
 *        (Karras et al. 2022, deterministic): with h = sigma_{i+1} - sigma_i,
 *        x_e = x - h sigma_i s(x, i), then
 *        x <- x - (h/2) (sigma_i s(x, i) + sigma_{i+1} s(x_e, i + 1)).
 *        Its Euler half alone is CAS at eta = 1 - gamma_i. Two network
 *        passes per level, none after the last. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/atomic_file.h"
#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/noise_rules.h"
#include "ncsn/rng.h"

static void clamp(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = x[i] < -1.0f ? -1.0f : x[i] > 1.0f ? 1.0f : x[i];
}

/* Holds known pixels at known + sigma * noise (the original NCSN inpainting). */
static void hold_known(const Sampler *S, float *x, const float *held, long k0, long nb)
{
    size_t per = shape_count(S->img);
    for (long b = 0; b < nb; b++) {
        const float *mk = S->mask + (S->n_mask == 1 ? 0 : (size_t)(k0 + b) * per);
        for (size_t i = 0; i < per; i++)
            if (mk[i] > 0.5f) x[b * per + i] = held[b * per + i];
    }
}

typedef struct {
    double t_start;
    long done, total; /* forward passes of this rank */
    int tty, on;      /* on: rank 0 of a run that shows progress */
} SampleProgress;

static void show(SampleProgress *p, int level, int L, long step, long T, long nb)
{
    p->done++;
    if (!p->on) return;
    double el = ncsn_now() - p->t_start;
    double rate = el > 0 ? (double)p->done * (double)nb / el : 0.0;
    double eta = p->done > 0 ? el / (double)p->done * (double)(p->total - p->done) : 0.0;
    if (p->tty) {
        fprintf(stderr, "\rlevel %d/%d step %ld/%ld  %.1f sample-steps/s  ETA %.0fs   ", level + 1, L,
                step + 1, T, rate, eta);
    } else if (step + 1 == T) {
        printf("level %d/%d done  %.1f sample-steps/s  ETA %.0fs\n", level + 1, L, rate, eta);
        fflush(stdout);
    }
}

/* The update of level i: x <- x + a s(x, i) + c z (see the top). */
typedef struct {
    float a, c;
} LevelStep;

static double cas_beta(double eta, double gamma)
{
    double q = (1.0 - eta) / gamma;
    return sqrt(1.0 - q * q);
}

static LevelStep level_step(const Sampler *S, const float *sigmas, int L, int i)
{
    LevelStep st;
    double sig_last = sigmas[L - 1], sigma = sigmas[i];
    if (S->kind == SAMPLER_ALS) {
        st.a = (float)(S->step_lr * (sigma / sig_last) * (sigma / sig_last));
        st.c = (float)sqrt(2.0 * st.a);
    } else {
        st.a = (float)(S->eta * sigma * sigma);
        st.c = i + 1 < L ? (float)(cas_beta(S->eta, sigmas[i + 1] / sigma) * sigmas[i + 1]) : 0.0f;
    }
    return st;
}

/* Heun's step from level i to i + 1 (see the top); x_e and score are
 * scratch buffers of n floats. */
static void heun_step(Model *m, ModelRun *run, float *x, float *x_e, float *score, int *labels, Shape s,
                      int i)
{
    size_t n = shape_count(s);
    double si = m->sigmas[i], sn = m->sigmas[i + 1], h = sn - si;
    float a1 = (float)(-h * si), a2 = (float)(-h * sn);
    for (int b = 0; b < s.N; b++) labels[b] = i;
    model_forward(m, run, score, x, labels, s);
    for (size_t j = 0; j < n; j++) {
        x_e[j] = x[j] + a1 * score[j];
        x[j] += 0.5f * a1 * score[j];
    }
    for (int b = 0; b < s.N; b++) labels[b] = i + 1;
    model_forward(m, run, score, x_e, labels, s);
    for (size_t j = 0; j < n; j++) x[j] += 0.5f * a2 * score[j];
}

/* x [nb, C, H, W]: the starting state of samples k0 .. k0+nb-1. */
static void initial_state(const Sampler *S, float *x, long k0, long nb, size_t per)
{
    for (long b = 0; b < nb; b++) {
        long k = k0 + b;
        if (S->init) memcpy(x + b * per, S->init + (size_t)k * per, per * sizeof(float));
        else if (S->normal_init) rng_fill_normal(x + b * per, per, S->seed, RNG_SAMPLE_INIT, 0, (uint32_t)k);
        else rng_fill_uniform(x + b * per, per, S->seed, RNG_SAMPLE_INIT, 0, (uint32_t)k, -1.0f, 1.0f);
    }
}

/* held [nb, C, H, W]: the known image plus noise of level i (sigma). */
static void known_at_level(const Sampler *S, float *held, long k0, long nb, size_t per, int i, double sigma)
{
    for (long b = 0; b < nb; b++) {
        long k = k0 + b;
        const float *kn = S->known + (S->n_known == 1 ? 0 : (size_t)k * per);
        rng_fill_normal(held + b * per, per, S->seed, RNG_INPAINT, (uint32_t)i, (uint32_t)k);
        for (size_t j = 0; j < per; j++) held[b * per + j] = kn[j] + (float)sigma * held[b * per + j];
    }
}

/* Runs samples [k0, k0 + nb) to the end; traj [L, n_local, ...] rows at
 * offset `row` get the state after each level when not NULL. */
static void run_batch(const Sampler *S, Model *m, ModelRun *run, float *x, long k0, long nb,
                      float *traj, long n_local, long row, SampleProgress *prog)
{
    size_t per = shape_count(S->img);
    int L = m->cfg.num_classes;
    Shape s = S->img;
    s.N = (int)nb;
    float *score = xmalloc((size_t)nb * per * sizeof(float));
    float *z = xmalloc((size_t)nb * per * sizeof(float));
    float *held = S->mask ? xmalloc((size_t)nb * per * sizeof(float)) : NULL;
    float *x_e = S->kind == SAMPLER_HEUN ? xmalloc((size_t)nb * per * sizeof(float)) : NULL;
    int *labels = xmalloc((size_t)nb * sizeof(int));
    initial_state(S, x, k0, nb, per);
    double sig_last = m->sigmas[L - 1];
    for (int i = 0; i < L; i++) {
        double sigma = m->sigmas[i];
        for (long b = 0; b < nb; b++) labels[b] = i;
        if (held) {
            known_at_level(S, held, k0, nb, per, i, sigma);
            hold_known(S, x, held, k0, nb);
        }
        if (S->kind == SAMPLER_HEUN) {
            if (i + 1 < L) heun_step(m, run, x, x_e, score, labels, s, i);
            if (S->clip) clamp(x, (size_t)nb * per);
            if (held) hold_known(S, x, held, k0, nb);
            show(prog, i, L, 0, 1, nb);
        } else {
            LevelStep st = level_step(S, m->sigmas, L, i);
            for (long t = 0; t < S->steps_each; t++) {
                uint32_t g = (uint32_t)(i * S->steps_each + t);
                model_forward(m, run, score, x, labels, s);
                size_t n = (size_t)nb * per;
                if (st.c != 0.0f) {
                    for (long b = 0; b < nb; b++)
                        rng_fill_normal(z + b * per, per, S->seed, RNG_LANGEVIN, g, (uint32_t)(k0 + b));
                    for (size_t j = 0; j < n; j++) x[j] = x[j] + st.a * score[j] + st.c * z[j];
                } else { /* CAS's last level: no noise after it */
                    for (size_t j = 0; j < n; j++) x[j] = x[j] + st.a * score[j];
                }
                if (S->clip) clamp(x, n);
                if (held) hold_known(S, x, held, k0, nb);
                show(prog, i, L, t, S->steps_each, nb);
            }
        }
        if (traj)
            memcpy(traj + ((size_t)i * n_local + row) * per, x, (size_t)nb * per * sizeof(float));
    }
    if (S->denoise) {
        for (long b = 0; b < nb; b++) labels[b] = L - 1;
        model_forward(m, run, score, x, labels, s);
        float a = (float)(sig_last * sig_last);
        for (size_t j = 0; j < (size_t)nb * per; j++) x[j] += a * score[j];
        if (S->clip) clamp(x, (size_t)nb * per);
    }
    free(score);
    free(z);
    free(held);
    free(x_e);
    free(labels);
}

const char *sampler_name(SamplerKind kind)
{
    static const char *const names[] = {"als", "cas", "heun"};
    return names[kind];
}

void sampler_setup(Sampler *S, const SamplerOptions *so, const float *sigmas, int L, char *desc, size_t cap)
{
    const char *p = so->prefix;
    double sL = sigmas[L - 1];
    int k = SAMPLER_ALS;
    while (k <= SAMPLER_HEUN && strcmp(so->kind, sampler_name((SamplerKind)k)) != 0) k++;
    if (k > SAMPLER_HEUN) ncsn_die_usage("option --%ssampler: expected als, cas or heun, got '%s'", p, so->kind);
    S->kind = (SamplerKind)k;
    if (so->steps_each < 1) ncsn_die_usage("option --%ssteps-each: must be >= 1", p);
    S->steps_each = so->steps_each;
    if (S->kind != SAMPLER_ALS) {
        if (so->steps_each_given && so->steps_each != 1)
            ncsn_die_usage("option --%ssteps-each: --%ssampler %s takes one step per noise level, got %ld",
                           p, p, sampler_name(S->kind), so->steps_each);
        S->steps_each = 1;
    }
    if (S->kind == SAMPLER_HEUN) {
        if (so->step_lr_given)
            ncsn_die_usage("option --%sstep-lr: --%ssampler heun has no step size (its steps are the noise levels)",
                           p, p);
        S->step_lr = 0.0;
        snprintf(desc, cap, "heun: deterministic, Heun's step of the probability-flow ODE from each level to "
                 "the next (2 network passes per level, %d in all)", 2 * (L - 1));
        return;
    }
    S->step_lr_auto = strcmp(so->step_lr, "auto") == 0;
    if (S->step_lr_auto) {
        if (S->kind == SAMPLER_CAS)
            ncsn_die_usage("option --%sstep-lr auto: NCSNv2's technique 4 chooses the step of --%ssampler als; "
                           "give --%ssampler cas a number", p, p, p);
        if (L < 2) ncsn_die_usage("option --%sstep-lr auto: needs at least 2 noise levels, the model has %d", p, L);
        double gamma = (double)sigmas[L - 2] / sL, ratio = 0.0;
        S->step_lr = noise_rules_step_lr(sL, gamma, S->steps_each, &ratio);
        snprintf(desc, cap, "als: %ld steps per level, step_lr %.6g (auto: NCSNv2 technique 4 with gamma = "
                 "sigma_{L-1}/sigma_L = %.6f gives s_T^2/sigma^2 = %.6f)", S->steps_each, S->step_lr, gamma, ratio);
        return;
    }
    char *end = NULL;
    S->step_lr = strtod(so->step_lr, &end);
    if (end == so->step_lr || *end)
        ncsn_die_usage("option --%sstep-lr: expected a number or auto, got '%s'", p, so->step_lr);
    if (!(S->step_lr > 0) || !isfinite(S->step_lr)) ncsn_die_usage("option --%sstep-lr: must be positive and finite, got '%s'", p, so->step_lr);
    if (S->kind == SAMPLER_ALS) {
        snprintf(desc, cap, "als: %ld steps per level, step_lr %.6g", S->steps_each, S->step_lr);
        return;
    }
    /* CAS: beta_i is real for (1 - eta)/gamma_i < 1 at every level, that is
     * eta > 1 - min gamma_i; and eta <= 1 (a longer step overshoots). */
    S->eta = S->step_lr / (sL * sL);
    /* sigma_L is stored in float32, so the step_lr meant as eta = 1
     * (sigma_L^2 written out in decimal) lands a rounding error above it. */
    if (S->eta > 1.0 && S->eta <= 1.0 + 1e-6) S->eta = 1.0;
    double gmin = 1.0;
    int at = 0;
    for (int i = 0; i + 1 < L; i++) {
        double g = (double)sigmas[i + 1] / sigmas[i];
        if (g < gmin) gmin = g, at = i;
    }
    double lo = 1.0 - gmin;
    if (!(S->eta > lo && S->eta <= 1.0))
        ncsn_die_usage("--%ssampler cas: --%sstep-lr %g gives eta = step_lr/sigma_L^2 = %.6g, but CAS needs %.6g < eta <= 1 "
                       "(the lower bound is 1 - sigmas[%d]/sigmas[%d], the smallest ratio of consecutive levels), "
                       "i.e. --%sstep-lr in (%.6g, %.6g]",
                       p, p, S->step_lr, S->eta, lo, at + 1, at, p, lo * sL * sL, sL * sL);
    snprintf(desc, cap, "cas: one step per level, step_lr %.6g, eta = step_lr/sigma_L^2 = %.6g (allowed: %.6g < eta <= 1)",
             S->step_lr, S->eta, lo);
}

double sampler_run(const Sampler *S, Model *m, const Dist *d, int progress, float *all, float *traj_all)
{
    int R = d->size, L = m->cfg.num_classes;
    long lo = d->rank * S->n / R, hi = (d->rank + 1) * S->n / R, nl = hi - lo;
    size_t per = shape_count(S->img);
    float *x = xmalloc((size_t)(nl > 0 ? nl : 1) * per * sizeof(float));                      /* [nl, C, H, W] */
    float *traj = S->trajectory ? xmalloc((size_t)L * (nl > 0 ? nl : 1) * per * sizeof(float)) : NULL; /* [L, nl, C, H, W] */
    ModelRun run;
    model_run_init(&run);
    run.inference = 1;
    run.keep_weights = S->keep_weights;
    SampleProgress prog = {.t_start = ncsn_now(), .on = progress && d->rank == 0};
    prog.tty = prog.on && isatty(STDERR_FILENO);
    long mb = S->micro_batch;
    prog.total = ((nl + mb - 1) / mb) * L * S->steps_each;
    for (long k = lo; k < hi; k += mb) {
        long nb = hi - k < mb ? hi - k : mb;
        run_batch(S, m, &run, x + (size_t)(k - lo) * per, k, nb, traj, nl, k - lo, &prog);
    }
    if (prog.tty) fputc('\n', stderr);
    long *counts = xmalloc((size_t)R * sizeof(long));
    for (int r = 0; r < R; r++) counts[r] = ((r + 1) * S->n / R - r * S->n / R) * (long)per;
    dist_gather_floats(x, all, counts);
    /* after the gather: rank 0 has then waited for the slowest rank */
    double elapsed = ncsn_now() - prog.t_start;
    if (traj) /* level by level, so traj_all holds [L, N, C, H, W] in sample order */
        for (int i = 0; i < L; i++)
            dist_gather_floats(traj + (size_t)i * nl * per, traj_all ? traj_all + (size_t)i * S->n * per : NULL, counts);
    free(counts);
    free(traj);
    free(x);
    model_run_free(&run);
    return elapsed;
}

void sampler_write(const char *path, const Sampler *S, const Model *m, const SamplesSource *src,
                   const float *all, const float *traj)
{
    AtomicH5 res;
    hid_t f = atomic_h5_begin(&res, path);
    hsize_t d[5] = {(hsize_t)S->n, (hsize_t)S->img.C, (hsize_t)S->img.H, (hsize_t)S->img.W};
    h5_write(f, "/samples", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 4, d, all);
    hid_t ds = H5Dopen2(f, "/samples", H5P_DEFAULT);
    h5_attr_write_str(ds, "model", src->model);
    h5_attr_write_str(ds, "weights", src->weights);
    h5_attr_write_str(ds, "init", src->init);
    if (src->inpaint) h5_attr_write_str(ds, "inpaint", src->inpaint);
    if (src->mask) h5_attr_write_str(ds, "mask", src->mask);
    if (src->step >= 0) {
        int step = (int)src->step;
        h5_attr_write_int(ds, "step", 1, &step);
    }
    int ints[3] = {(int)S->steps_each, S->clip, S->denoise};
    h5_attr_write_int(ds, "steps_each", 1, &ints[0]);
    h5_attr_write_int(ds, "clip", 1, &ints[1]);
    h5_attr_write_int(ds, "denoise", 1, &ints[2]);
    h5_attr_write_str(ds, "sampler", sampler_name(S->kind));
    h5_attr_write_double(ds, "step_lr", 1, &S->step_lr);
    h5_attr_write_int(ds, "step_lr_auto", 1, &S->step_lr_auto);
    if (S->kind == SAMPLER_CAS) h5_attr_write_double(ds, "eta", 1, &S->eta);
    double seed = (double)S->seed;
    h5_attr_write_double(ds, "seed", 1, &seed);
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)S->seed);
    h5_attr_write_str(ds, "seed_text", seed_text);
    int L = m->cfg.num_classes;
    double *sig = xmalloc((size_t)L * sizeof(double));
    for (int i = 0; i < L; i++) sig[i] = m->sigmas[i];
    h5_attr_write_double(ds, "sigmas", L, sig);
    free(sig);
    H5Dclose(ds);
    if (traj) {
        hsize_t t[5] = {(hsize_t)L, (hsize_t)S->n, d[1], d[2], d[3]};
        h5_write(f, "/trajectory", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 5, t, traj);
    }
    atomic_h5_commit(&res);
}
