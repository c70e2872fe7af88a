/* bench_net.c: times the network's forward and forward+backward (the DSM
 * loss step without the optimizer) and, in the same run, cblas_sgemm on a
 * matrix product of the network's typical shape, so the effective rate of
 * the network can be read against what the BLAS reaches here.
 *
 * usage: bench_net [nf=128] [C=3] [H=32] [batch=8] [reps=5]
 * Effective GFLOP/s counts direct-convolution FLOPs (2 * Cin * Cout * 9 * H
 * * W per image and conv; backward = 2x forward) over the measured time. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/loss.h"
#include "ncsn/model.h"
#include "ncsn/rng.h"

/* CPU time of the whole process: less sensitive than wall time to other
 * programs on a busy machine, for comparing variants. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* GFLOP/s of C[M,N] = A[M,K] B[K,N] at the shape of one conv of the network. */
static double sgemm_rate(int M, int N, int K, int reps)
{
    float *A = xcalloc((size_t)M * K, sizeof(float)), *B = xcalloc((size_t)K * N, sizeof(float));
    float *C = xcalloc((size_t)M * N, sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, K, B, N, 0, C, N);
    double *t = xmalloc((size_t)reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        double t0 = ncsn_now();
        for (int i = 0; i < 10; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, K, B, N, 0, C, N);
        t[r] = (ncsn_now() - t0) / 10;
    }
    double rate = 2.0 * M * N * K / median(t, reps) / 1e9;
    free(A), free(B), free(C), free(t);
    return rate;
}

int main(int argc, char **argv)
{
    ops_choose_blas_kernels(argv); /* as ncsn does */
    const char *note = ops_blas_kernels_note();
    if (note) printf("%s\n", note);
    int nf = argc > 1 ? atoi(argv[1]) : 128, C = argc > 2 ? atoi(argv[2]) : 3;
    int H = argc > 3 ? atoi(argv[3]) : 32, N = argc > 4 ? atoi(argv[4]) : 8;
    int reps = argc > 5 ? atoi(argv[5]) : 5;
    NcsnConfig cfg;
    config_default(&cfg);
    cfg.nf = nf;
    cfg.in_channels = C;
    Model m;
    model_init(&m, &cfg);
    model_init_weights(&m, 1);
    float sig[10];
    make_sigmas(sig, 50, 0.01, 10);
    model_set_sigmas(&m, sig);
    double conv_flops = 0; /* forward, per image */
    for (int i = 0; i < m.table.n; i++) {
        const ParamSpec *p = &m.table.specs[i];
        if (p->ndim == 4 && strncmp(p->key, "refine4.msf", 11) != 0)
            conv_flops += 2.0 * (double)p->count * H * H;
    }
    Shape s = {N, C, H, H};
    size_t n = shape_count(s);
    float *x = xmalloc(n * sizeof(float)), *z = xmalloc(n * sizeof(float)), *out = xmalloc(n * sizeof(float));
    rng_fill_uniform(x, n, 1, 1, 0, 0, -1, 1);
    rng_fill_normal(z, n, 1, 2, 0, 0);
    int *labels = xmalloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) labels[i] = i % 10;
    ModelRun run;
    model_run_init(&run);
    DsmWork w = {0};
    double *tf = xmalloc((size_t)reps * sizeof(double)), *tb = xmalloc((size_t)reps * sizeof(double));
    double *cf = xmalloc((size_t)reps * sizeof(double)), *cb = xmalloc((size_t)reps * sizeof(double));
    model_forward(&m, &run, out, x, labels, s); /* warm-up: sizes the arena */
    for (int r = 0; r < reps; r++) {
        double t0 = ncsn_now(), c0 = cpu_now();
        model_forward(&m, &run, out, x, labels, s);
        tf[r] = ncsn_now() - t0;
        cf[r] = cpu_now() - c0;
    }
    dsm_step(&m, &run, &w, x, labels, z, s, 1.0f / N, NULL);
    for (int r = 0; r < reps; r++) {
        double t0 = ncsn_now(), c0 = cpu_now();
        dsm_step(&m, &run, &w, x, labels, z, s, 1.0f / N, NULL);
        tb[r] = ncsn_now() - t0;
        cb[r] = cpu_now() - c0;
    }
    double f = median(tf, reps), b = median(tb, reps);
    printf("process CPU time (all threads): forward %.3f s, forward+backward %.3f s\n", median(cf, reps), median(cb, reps));
    double gemm = sgemm_rate(nf, H * H, 9 * nf, reps);
    printf("network nf %d, %dx%dx%d, batch %d: %.2f GFLOP forward per image (direct convolution)\n", nf, C,
           H, H, N, conv_flops / 1e9);
    printf("forward:          %.3f s  %7.2f images/s  %6.1f GFLOP/s effective\n", f, N / f, conv_flops * N / f / 1e9);
    printf("forward+backward: %.3f s  %7.2f images/s  %6.1f GFLOP/s effective\n", b, N / b,
           3 * conv_flops * N / b / 1e9);
    printf("cblas_sgemm %dx%dx%d: %.1f GFLOP/s; network forward at %.0f%% of it, forward+backward at %.0f%%\n", nf,
           H * H, 9 * nf, gemm, 100 * conv_flops * N / f / 1e9 / gemm, 100 * 3 * conv_flops * N / b / 1e9 / gemm);
    printf("activation arena: %.0f MB\n", run.act.cap * 4.0 / 1e6);
    dsm_work_free(&w);
    model_run_free(&run);
    model_free(&m);
    free(x), free(z), free(out), free(labels), free(tf), free(tb), free(cf), free(cb);
    return 0;
}
