/* sample.c: `ncsn sample`, annealed Langevin dynamics (DESIGN.md 3) or
 * consistent annealed sampling (Jolicoeur-Martineau et al. 2021), spread
 * over MPI ranks.
 *
 * Both samplers make, at level i, T updates x <- x + a_i s(x, i) + c_i z:
 *   ALS: T = --steps-each, a_i = eps sigma_i^2/sigma_L^2, c_i = sqrt(2 a_i);
 *   CAS: T = 1, a_i = eta sigma_i^2 with eta = eps/sigma_L^2, and
 *        c_i = beta_i sigma_{i+1}, beta_i = sqrt(1 - ((1 - eta)/gamma_i)^2),
 *        gamma_i = sigma_{i+1}/sigma_i; c = 0 at the last level.
 * CAS's noise keeps the state's total noise at exactly sigma_{i+1} if the
 * score is exact: the step shrinks the sigma_i noise to (1 - eta) sigma_i,
 * and beta_i sigma_{i+1} tops it up.
 *
 * Rank r takes samples [r*N/R, (r+1)*N/R) and runs them in micro-batches.
 * Sample k starts from a draw of (seed, k) (or row k of --init), and its
 * noise at global step g = level * T + step is a draw of (seed, g, k).
 * Every operation of the network is per sample, so a sample's result does
 * not depend on the rank count or the micro-batch. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/ckpt.h"
#include "ncsn/cli.h"
#include "ncsn/common.h"
#include "ncsn/dist.h"
#include "ncsn/h5util.h"
#include "ncsn/noise_rules.h"
#include "ncsn/png.h"
#include "ncsn/rng.h"

typedef enum { SAMPLER_ALS, SAMPLER_CAS } SamplerKind;

typedef struct {
    long n;
    Shape img; /* N = 1 */
    SamplerKind kind;
    long steps_each;  /* ALS: --steps-each; CAS: 1 */
    double step_lr;   /* eps, given or chosen by technique 4 */
    int step_lr_auto;
    double eta;       /* CAS: eps / sigma_L^2 */
    int clip, denoise, normal_init;
    uint64_t seed;
    const float *init;        /* [n, C, H, W] or NULL */
    const float *known, *mask; /* inpainting: [n_known, C, H, W], n_known is 1 or n */
    long n_known, n_mask;
} Sampler;

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
    int tty, rank;
} SampleProgress;

static void show(SampleProgress *p, int level, int L, long step, long T, long nb)
{
    p->done++;
    if (p->rank != 0) return;
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
    int *labels = xmalloc((size_t)nb * sizeof(int));
    for (long b = 0; b < nb; b++) {
        long k = k0 + b;
        if (S->init) memcpy(x + b * per, S->init + (size_t)k * per, per * sizeof(float));
        else if (S->normal_init) rng_fill_normal(x + b * per, per, S->seed, RNG_SAMPLE_INIT, 0, (uint32_t)k);
        else rng_fill_uniform(x + b * per, per, S->seed, RNG_SAMPLE_INIT, 0, (uint32_t)k, -1.0f, 1.0f);
    }
    double sig_last = m->sigmas[L - 1];
    for (int i = 0; i < L; i++) {
        double sigma = m->sigmas[i];
        LevelStep st = level_step(S, m->sigmas, L, i);
        for (long b = 0; b < nb; b++) labels[b] = i;
        if (held) {
            for (long b = 0; b < nb; b++) {
                long k = k0 + b;
                const float *kn = S->known + (S->n_known == 1 ? 0 : (size_t)k * per);
                rng_fill_normal(held + b * per, per, S->seed, RNG_INPAINT, (uint32_t)i, (uint32_t)k);
                for (size_t j = 0; j < per; j++) held[b * per + j] = kn[j] + (float)sigma * held[b * per + j];
            }
            hold_known(S, x, held, k0, nb);
        }
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
    free(labels);
}

/* Reads a [n or 1, C, H, W] float tensor `name` of `path`. */
static float *read_images(const char *path, const char *name, const Sampler *S, long *n_out, int allow_one)
{
    hid_t f = h5_open_read(path);
    hsize_t d[4];
    float *x = h5_read_floats(f, path, name, 4, d);
    H5Fclose(f);
    if ((int)d[1] != S->img.C || (int)d[2] != S->img.H || (int)d[3] != S->img.W)
        ncsn_die_usage("%s: dataset %s has images of %llu x %llu x %llu, expected %d x %d x %d "
                       "(channels x --height x --width)",
                       path, name, (unsigned long long)d[1], (unsigned long long)d[2],
                       (unsigned long long)d[3], S->img.C, S->img.H, S->img.W);
    if (!((long)d[0] == S->n || (allow_one && d[0] == 1)))
        ncsn_die_usage("%s: dataset %s has %llu images, expected %ld%s", path, name,
                       (unsigned long long)d[0], S->n, allow_one ? " or 1" : " (--n)");
    *n_out = (long)d[0];
    return x;
}

static void write_samples(const Options *o, const Model *m, const Sampler *S, const float *all,
                          const float *traj)
{
    AtomicH5 res;
    hid_t f = atomic_h5_begin(&res, o->out);
    hsize_t d[5] = {(hsize_t)S->n, (hsize_t)S->img.C, (hsize_t)S->img.H, (hsize_t)S->img.W};
    h5_write(f, "/samples", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 4, d, all);
    hid_t ds = H5Dopen2(f, "/samples", H5P_DEFAULT);
    h5_attr_write_str(ds, "model", o->model);
    h5_attr_write_str(ds, "weights", o->use_ema ? "ema" : "model");
    h5_attr_write_str(ds, "init", o->init_file ? o->init_file : o->init_dist);
    if (o->inpaint) h5_attr_write_str(ds, "inpaint", o->inpaint);
    if (o->mask) h5_attr_write_str(ds, "mask", o->mask);
    int ints[3] = {(int)S->steps_each, S->clip, S->denoise};
    h5_attr_write_int(ds, "steps_each", 1, &ints[0]);
    h5_attr_write_int(ds, "clip", 1, &ints[1]);
    h5_attr_write_int(ds, "denoise", 1, &ints[2]);
    h5_attr_write_str(ds, "sampler", S->kind == SAMPLER_CAS ? "cas" : "als");
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

/* Strip picture: up to 8 samples (rows) from the state after each level to the end. */
static void write_strip(const char *png, const float *traj, const float *final, const Sampler *S, int L)
{
    long rows = S->n < 8 ? S->n : 8;
    size_t per = shape_count(S->img);
    int cols = L + 1;
    float *pic = xmalloc((size_t)rows * cols * per * sizeof(float));
    for (long r = 0; r < rows; r++) {
        for (int i = 0; i < L; i++)
            memcpy(pic + ((size_t)r * cols + i) * per, traj + ((size_t)i * S->n + r) * per, per * sizeof(float));
        memcpy(pic + ((size_t)r * cols + L) * per, final + (size_t)r * per, per * sizeof(float));
    }
    /* GRID.png -> GRID_trajectory.png; a name without ".png" keeps all of it */
    size_t stem = strlen(png);
    if (stem > 4 && strcmp(png + stem - 4, ".png") == 0) stem -= 4;
    char path[4200];
    snprintf(path, sizeof path, "%.*s_trajectory.png", (int)stem, png);
    if (png_write_grid(path, pic, (int)(rows * cols), S->img.C, S->img.H, S->img.W, cols) != 0)
        ncsn_die_usage("--png: cannot write %s", path);
    printf("wrote %s\n", path);
    free(pic);
}

/* --sampler and --step-lr: fills S->kind, steps_each, step_lr (technique 4
 * for auto), eta, and a one-line description for the printout. Usage
 * errors exit 2 naming the option and, for CAS, the bounds on eta. */
static void sampler_setup(Sampler *S, const Options *o, const Model *m, char *desc, size_t cap)
{
    int L = m->cfg.num_classes;
    double sL = m->sigmas[L - 1];
    if (strcmp(o->sampler, "als") == 0) S->kind = SAMPLER_ALS;
    else if (strcmp(o->sampler, "cas") == 0) S->kind = SAMPLER_CAS;
    else ncsn_die_usage("option --sampler: expected als or cas, got '%s'", o->sampler);
    S->steps_each = o->steps_each;
    if (S->kind == SAMPLER_CAS) {
        if (opt_given(o, "steps-each") && o->steps_each != 1)
            ncsn_die_usage("option --steps-each: --sampler cas takes one step per noise level, got %ld",
                           o->steps_each);
        S->steps_each = 1;
    }
    S->step_lr_auto = strcmp(o->step_lr, "auto") == 0;
    if (S->step_lr_auto) {
        if (S->kind == SAMPLER_CAS)
            ncsn_die_usage("option --step-lr auto: NCSNv2's technique 4 chooses the step of --sampler als; "
                           "give --sampler cas a number");
        if (L < 2) ncsn_die_usage("option --step-lr auto: needs at least 2 noise levels, the model has %d", L);
        double gamma = (double)m->sigmas[L - 2] / sL, ratio = 0.0;
        S->step_lr = noise_rules_step_lr(sL, gamma, S->steps_each, &ratio);
        snprintf(desc, cap, "als: %ld steps per level, step_lr %.6g (auto: NCSNv2 technique 4 with gamma = "
                 "sigma_{L-1}/sigma_L = %.6f gives s_T^2/sigma^2 = %.6f)", S->steps_each, S->step_lr, gamma, ratio);
        return;
    }
    char *end = NULL;
    S->step_lr = strtod(o->step_lr, &end);
    if (end == o->step_lr || *end)
        ncsn_die_usage("option --step-lr: expected a number or auto, got '%s'", o->step_lr);
    if (!(S->step_lr > 0) || !isfinite(S->step_lr)) ncsn_die_usage("option --step-lr: must be positive");
    if (S->kind == SAMPLER_ALS) {
        snprintf(desc, cap, "als: %ld steps per level, step_lr %.6g", S->steps_each, S->step_lr);
        return;
    }
    /* CAS: beta_i is real for (1 - eta)/gamma_i < 1 at every level, that is
     * eta > 1 - min gamma_i; and eta <= 1 (a longer step overshoots). */
    S->eta = S->step_lr / (sL * sL);
    double gmin = 1.0;
    int at = 0;
    for (int i = 0; i + 1 < L; i++) {
        double g = (double)m->sigmas[i + 1] / m->sigmas[i];
        if (g < gmin) gmin = g, at = i;
    }
    double lo = 1.0 - gmin;
    if (!(S->eta > lo && S->eta <= 1.0))
        ncsn_die_usage("--sampler cas: --step-lr %g gives eta = step_lr/sigma_L^2 = %.6g, but CAS needs %.6g < eta <= 1 "
                       "(the lower bound is 1 - sigmas[%d]/sigmas[%d], the smallest ratio of consecutive levels), "
                       "i.e. --step-lr in (%.6g, %.6g]",
                       S->step_lr, S->eta, lo, at + 1, at, lo * sL * sL, sL * sL);
    snprintf(desc, cap, "cas: one step per level, step_lr %.6g, eta = step_lr/sigma_L^2 = %.6g (allowed: %.6g < eta <= 1)",
             S->step_lr, S->eta, lo);
}

int cmd_sample(const Options *o)
{
    Dist dist;
    dist_init(&dist, NULL, NULL);
    h5_quiet();
    ncsn_set_collective(1); /* every rank validates the same options and files */
    if (!o->model) ncsn_die_usage("ncsn sample: option --model is required");
    if (!o->out) ncsn_die_usage("ncsn sample: option --out is required");
    Sampler S;
    memset(&S, 0, sizeof S);
    Model m;
    hid_t mf = h5_open_read(o->model);
    ckpt_load_model_from(&m, mf, o->model);
    if (o->use_ema) {
        if (!h5_exists(mf, "/ema"))
            ncsn_die_usage("%s: --ema: the file has no /ema group (train with --ema RATE)", o->model);
        ckpt_read_weights(mf, o->model, "/ema", &m, m.params);
    }
    H5Fclose(mf);
    model_drop_grads(&m);
    if (!m.sigmas) ncsn_die_usage("%s: /model/sigmas is missing: sampling needs noise levels", o->model);
    int L = m.cfg.num_classes;
    long H = opt_given(o, "height") ? o->height : o->image_size;
    long W = opt_given(o, "width") ? o->width : o->image_size;
    if (H < 1 || W < 1 || H > 4096 || W > 4096) ncsn_die_usage("--height/--width/--image-size must be in 1..4096");
    if (o->n < 1) ncsn_die_usage("option --n: must be >= 1");
    if (o->steps_each < 1) ncsn_die_usage("option --steps-each: must be >= 1");
    if (o->micro_batch < 1) ncsn_die_usage("option --micro-batch: must be >= 1");
    if (strcmp(o->init_dist, "uniform") != 0 && strcmp(o->init_dist, "normal") != 0)
        ncsn_die_usage("option --init-dist: expected uniform or normal, got '%s'", o->init_dist);
    if (!o->inpaint != !o->mask) ncsn_die_usage("--inpaint and --mask must be given together");
    if (o->png && m.cfg.in_channels != 1 && m.cfg.in_channels != 3)
        ncsn_die_usage("--png: pictures need 1 or 3 channels, the model has %d", m.cfg.in_channels);
    S.n = o->n;
    S.img = (Shape){1, m.cfg.in_channels, (int)H, (int)W};
    char sampler_desc[512];
    sampler_setup(&S, o, &m, sampler_desc, sizeof sampler_desc);
    S.clip = !o->no_clip;
    S.denoise = o->denoise;
    S.normal_init = strcmp(o->init_dist, "normal") == 0;
    S.seed = o->seed;
    float *init = NULL, *known = NULL, *mask = NULL;
    long n_init;
    if (o->init_file) init = read_images(o->init_file, "/x", &S, &n_init, 0);
    if (o->inpaint) {
        known = read_images(o->inpaint, "/x", &S, &S.n_known, 1);
        mask = read_images(o->mask, "/mask", &S, &S.n_mask, 1);
    }
    S.init = init;
    S.known = known;
    S.mask = mask;

    ncsn_set_collective(0);
    int R = dist.size;
    long lo = dist.rank * S.n / R, hi = (dist.rank + 1) * S.n / R, nl = hi - lo;
    size_t per = shape_count(S.img);
    if (dist.rank == 0) {
        opt_print(o, stdout);
        printf("  %-18s %d\n  %-18s %s\n", "ranks", R, "weights", o->use_ema ? "EMA" : "model");
        printf("  %-18s %s\n", "schedule", sampler_desc);
        fflush(stdout);
    }
    float *x = xmalloc((size_t)(nl > 0 ? nl : 1) * per * sizeof(float));
    float *traj = o->trajectory ? xmalloc((size_t)L * (nl > 0 ? nl : 1) * per * sizeof(float)) : NULL;
    ModelRun run;
    model_run_init(&run);
    run.inference = 1;
    SampleProgress prog = {.t_start = ncsn_now(), .tty = isatty(STDERR_FILENO), .rank = dist.rank};
    long mb = o->micro_batch;
    prog.total = ((nl + mb - 1) / mb) * L * S.steps_each;
    for (long k = lo; k < hi; k += mb) {
        long nb = hi - k < mb ? hi - k : mb;
        run_batch(&S, &m, &run, x + (size_t)(k - lo) * per, k, nb, traj, nl, k - lo, &prog);
    }
    if (prog.tty && dist.rank == 0) fputc('\n', stderr);
    long *counts = xmalloc((size_t)R * sizeof(long));
    for (int r = 0; r < R; r++) counts[r] = ((r + 1) * S.n / R - r * S.n / R) * (long)per;
    float *all = dist.rank == 0 ? xmalloc((size_t)S.n * per * sizeof(float)) : NULL;
    dist_gather_floats(x, all, counts);
    /* after the gather: rank 0 has then waited for the slowest rank */
    double elapsed = ncsn_now() - prog.t_start;
    float *traj_all = NULL;
    if (traj) {
        /* level by level, so the file holds [L, N, C, H, W] in sample order */
        traj_all = dist.rank == 0 ? xmalloc((size_t)L * S.n * per * sizeof(float)) : NULL;
        for (int i = 0; i < L; i++)
            dist_gather_floats(traj + (size_t)i * nl * per, traj_all ? traj_all + (size_t)i * S.n * per : NULL, counts);
    }
    if (dist.rank == 0) {
        write_samples(o, &m, &S, all, traj_all);
        printf("wrote %s: %ld samples of %d x %d x %d in %.1f s (%.1f Langevin sample-steps/s)\n", o->out,
               S.n, S.img.C, S.img.H, S.img.W, elapsed, (double)S.n * L * S.steps_each / elapsed);
        if (o->png) {
            int cols = (int)ceil(sqrt((double)S.n));
            if (png_write_grid(o->png, all, (int)S.n, S.img.C, S.img.H, S.img.W, cols) != 0)
                ncsn_die_usage("--png: cannot write %s", o->png);
            printf("wrote %s\n", o->png);
            if (traj_all) write_strip(o->png, traj_all, all, &S, L);
        }
    }
    free(counts);
    free(all);
    free(traj_all);
    free(traj);
    free(x);
    free(init);
    free(known);
    free(mask);
    model_run_free(&run);
    model_free(&m);
    dist_finalize();
    return 0;
}
