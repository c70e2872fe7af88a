/* bench_threads.c: strong scaling inside a rank. How much faster a batch
 * of 1 or 2 images gets with T threads than with 1, for a training step
 * (forward, backward, gradient norm, Adam) and a sampling step (forward),
 * against what the machine allows: the same step run as T independent
 * 1-thread copies at once (each on its own replica, as T single-thread
 * ranks would), whose combined rate over one copy's rate is the ceiling.
 *
 * usage: bench_threads [nf=128] [C=3] [H=32] [reps=7] [T=2]
 * Within each repetition the three settings (1 thread, T threads, T copies)
 * run back to back, and each ratio is the median over repetitions of the
 * per-repetition ratio, so a machine whose speed drifts disturbs it less. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/loss.h"
#include "ncsn/model.h"
#include "ncsn/optim.h"
#include "ncsn/rng.h"

#include "bench_stats.h"

#define MAX_COPIES 16

/* One replica: a model, its buffers, and the Adam moments. */
typedef struct {
    Model m;
    ModelRun run;
    ModelRun kept; /* sampling with the transformed weights kept (ncsn sample's default at 1 sample per pass) */
    DsmWork w;
    float *mom1, *mom2;
} Replica;

static void replica_init(Replica *r, const NcsnConfig *cfg, const float *sigmas)
{
    memset(r, 0, sizeof *r);
    model_init(&r->m, cfg);
    model_init_weights(&r->m, 1);
    model_set_sigmas(&r->m, sigmas);
    model_run_init(&r->run);
    model_run_init(&r->kept);
    r->mom1 = xcalloc(r->m.table.total, sizeof(float));
    r->mom2 = xcalloc(r->m.table.total, sizeof(float));
}

static void replica_free(Replica *r)
{
    dsm_work_free(&r->w);
    model_run_free(&r->run);
    model_run_free(&r->kept);
    model_free(&r->m);
    free(r->mom1), free(r->mom2);
}

typedef struct {
    Shape s;
    float *x, *z, *out;
    int *labels;
} Batch;

enum { SAMPLING, TRAINING, SAMPLING_KEPT };

/* One step on replica r: training, or sampling (with the weights kept). */
static void step(Replica *r, const Batch *b, int mode)
{
    if (mode != TRAINING) {
        model_forward(&r->m, mode == SAMPLING_KEPT ? &r->kept : &r->run, b->out, b->x, b->labels, b->s);
        return;
    }
    static const AdamConfig adam = {1e-6, 0.9, 0.999, 1e-8, 0.0, 0, 0, 0};
    vec_zero(r->m.grads, r->m.table.total);
    dsm_step(&r->m, &r->run, &r->w, b->x, b->labels, b->z, b->s, 1.0f / (float)b->s.N, NULL);
    volatile double norm = grad_norm(r->m.grads, r->m.table.total); /* as the trainer does before Adam */
    (void)norm;
    adam_step(&adam, 1, r->m.params, r->m.grads, r->mom1, r->mom2, r->m.table.total);
}

static double timed(Replica *r, const Batch *b, int mode, int threads)
{
    ops_set_threads(threads);
    double t0 = ncsn_now();
    step(r, b, mode);
    return ncsn_now() - t0;
}

/* T copies at once, one thread each: the wall time of the slowest. */
static double timed_copies(Replica *rs, const Batch *b, int mode, int T)
{
    ops_set_threads(1);
    double t0 = ncsn_now();
#pragma omp parallel num_threads(T)
    step(&rs[omp_get_thread_num()], b, mode);
    return ncsn_now() - t0;
}

int main(int argc, char **argv)
{
    ops_choose_blas_kernels(argv); /* as ncsn does */
    int nf = argc > 1 ? atoi(argv[1]) : 128, C = argc > 2 ? atoi(argv[2]) : 3;
    int H = argc > 3 ? atoi(argv[3]) : 32, reps = argc > 4 ? atoi(argv[4]) : 7;
    int T = argc > 5 ? atoi(argv[5]) : 2;
    if (nf < 1 || C < 1 || H < 4 || reps < 1 || T < 2 || T > MAX_COPIES) {
        fprintf(stderr, "usage: bench_threads [nf] [C] [H >= 4] [reps >= 1] [T in 2..%d]\n", MAX_COPIES);
        return 2;
    }
    NcsnConfig cfg;
    config_default(&cfg);
    cfg.nf = nf;
    cfg.in_channels = C;
    float sig[10];
    make_sigmas(sig, 50, 0.01, 10);
    Replica rs[MAX_COPIES];
    for (int k = 0; k < T; k++) replica_init(&rs[k], &cfg, sig);
    printf("network nf %d, %dx%dx%d; %d threads against 1, and against %d 1-thread copies at once (the ceiling); "
           "median of %d repetitions\n", nf, C, H, H, T, T, reps);
    printf("%-22s %5s %12s %12s %12s %14s %14s\n", "step", "batch", "1 thread s", "threads s", "copies s",
           "threads/1", "ceiling/1");
    double *t1 = xmalloc((size_t)reps * sizeof(double)), *tt = xmalloc((size_t)reps * sizeof(double));
    double *tc = xmalloc((size_t)reps * sizeof(double)), *q = xmalloc((size_t)reps * sizeof(double));
    double *qc = xmalloc((size_t)reps * sizeof(double));
    for (int N = 1; N <= 2; N++) {
        Batch b = {{N, C, H, H}, NULL, NULL, NULL, NULL};
        size_t n = shape_count(b.s);
        b.x = xmalloc(n * sizeof(float)), b.z = xmalloc(n * sizeof(float)), b.out = xmalloc(n * sizeof(float));
        b.labels = xmalloc((size_t)N * sizeof(int));
        rng_fill_uniform(b.x, n, 1, 1, 0, 0, -1, 1);
        rng_fill_normal(b.z, n, 1, 2, 0, 0);
        for (int i = 0; i < N; i++) b.labels[i] = i % 10;
        static const struct {
            int mode;
            const char *name;
        } rows[] = {{TRAINING, "training"}, {SAMPLING, "sampling"}, {SAMPLING_KEPT, "sampling, weights kept"}};
        for (int k = 0; k < (N == 1 ? 3 : 2); k++) { /* ncsn sample keeps the weights at 1 sample per pass */
            int mode = rows[k].mode;
            if (mode == SAMPLING_KEPT)
                for (int c = 0; c < T; c++) { /* kept from the weights as they are now */
                    model_run_free(&rs[c].kept);
                    model_run_init(&rs[c].kept);
                    rs[c].kept.keep_weights = 1;
                }
            timed(&rs[0], &b, mode, T); /* warm-up: sizes the arenas */
            timed_copies(rs, &b, mode, T);
            for (int r = 0; r < reps; r++) {
                t1[r] = timed(&rs[0], &b, mode, 1);
                tt[r] = timed(&rs[0], &b, mode, T);
                tc[r] = timed_copies(rs, &b, mode, T);
                q[r] = t1[r] / tt[r];
                qc[r] = T * t1[r] / tc[r];
            }
            printf("%-22s %5d %12.4f %12.4f %12.4f %13.2fx %13.2fx\n", rows[k].name, N, median(t1, reps),
                   median(tt, reps), median(tc, reps), median(q, reps), median(qc, reps));
            fflush(stdout);
        }
        free(b.x), free(b.z), free(b.out), free(b.labels);
    }
    for (int k = 0; k < T; k++) replica_free(&rs[k]);
    free(t1), free(tt), free(tc), free(q), free(qc);
    return 0;
}
