/* bench_net.c: times the network's forward and forward+backward (the DSM
 * loss step without the optimizer) and, in the same run, cblas_sgemm on a
 * matrix product of the network's typical shape, so the effective rate of
 * the network can be read against what the BLAS reaches here.
 *
 * usage: bench_net [nf=128] [C=3] [H=32] [batch=8] [reps=5] [norms=cin]
 * norms: a comma list of cin, cin++. The first network is reported as
 * below; each further one is timed in the same process, its repetitions
 * alternating with the first's, and reported as the median of its time
 * over the first's in each repetition (which a busy machine disturbs less
 * than times taken minutes apart).
 * The process CPU time of the first network is printed as the median and
 * the fastest of the repetitions (bench/portable.sh compares the fastest).
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

#include "bench_stats.h"

/* CPU time of the whole process: less sensitive than wall time to other
 * programs on a busy machine, for comparing variants. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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

/* One network of the comparison and its times per repetition. */
typedef struct {
    Model m;
    ModelRun run;
    DsmWork w;
    double *tf, *tb, *cf, *cb; /* wall and process CPU time: forward, forward+backward */
} Net;

/* median over repetitions of a[r] / b[r] */
static double median_ratio(const double *a, const double *b, int reps)
{
    double *q = xmalloc((size_t)reps * sizeof(double));
    for (int r = 0; r < reps; r++) q[r] = a[r] / b[r];
    double m = median(q, reps);
    free(q);
    return m;
}

int main(int argc, char **argv)
{
    ops_choose_blas_kernels(argv); /* as ncsn does */
    const char *note = ops_blas_kernels_note();
    if (note) printf("%s\n", note);
    int nf = argc > 1 ? atoi(argv[1]) : 128, C = argc > 2 ? atoi(argv[2]) : 3;
    int H = argc > 3 ? atoi(argv[3]) : 32, N = argc > 4 ? atoi(argv[4]) : 8;
    int reps = argc > 5 ? atoi(argv[5]) : 5;
    char norms[64];
    snprintf(norms, sizeof norms, "%s", argc > 6 ? argv[6] : "cin");
    NcsnConfig cfg;
    config_default(&cfg);
    cfg.nf = nf;
    cfg.in_channels = C;
    Net nets[4];
    int nn = 0;
    float sig[10];
    make_sigmas(sig, 50, 0.01, 10);
    for (char *tok = strtok(norms, ","); tok; tok = strtok(NULL, ",")) {
        if (nn == 4 || !norm_kind_parse(tok, &cfg.norm)) {
            fprintf(stderr, "bench_net: norms must be up to four of cin, cin++ (comma list), got '%s'\n", argv[6]);
            return 2;
        }
        Net *t = &nets[nn++];
        memset(t, 0, sizeof *t);
        model_init(&t->m, &cfg);
        model_init_weights(&t->m, 1);
        model_set_sigmas(&t->m, sig);
        model_run_init(&t->run);
        t->tf = xmalloc((size_t)reps * sizeof(double)), t->tb = xmalloc((size_t)reps * sizeof(double));
        t->cf = xmalloc((size_t)reps * sizeof(double)), t->cb = xmalloc((size_t)reps * sizeof(double));
    }
    if (nn == 0) return 2;
    Model *m0 = &nets[0].m;
    double conv_flops = 0; /* forward, per image */
    for (int i = 0; i < m0->table.n; i++) {
        const ParamSpec *p = &m0->table.specs[i];
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
    for (int k = 0; k < nn; k++) model_forward(&nets[k].m, &nets[k].run, out, x, labels, s); /* warm-up: sizes the arena */
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < nn; k++) {
            Net *t = &nets[k];
            double t0 = ncsn_now(), c0 = cpu_now();
            model_forward(&t->m, &t->run, out, x, labels, s);
            t->tf[r] = ncsn_now() - t0;
            t->cf[r] = cpu_now() - c0;
        }
    for (int k = 0; k < nn; k++) dsm_step(&nets[k].m, &nets[k].run, &nets[k].w, x, labels, z, s, 1.0f / N, NULL);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < nn; k++) {
            Net *t = &nets[k];
            double t0 = ncsn_now(), c0 = cpu_now();
            dsm_step(&t->m, &t->run, &t->w, x, labels, z, s, 1.0f / N, NULL);
            t->tb[r] = ncsn_now() - t0;
            t->cb[r] = cpu_now() - c0;
        }
    /* ratios before median() sorts the arrays */
    double ratio[4][4];
    for (int k = 1; k < nn; k++) {
        ratio[k][0] = median_ratio(nets[k].tf, nets[0].tf, reps);
        ratio[k][1] = median_ratio(nets[k].tb, nets[0].tb, reps);
        ratio[k][2] = median_ratio(nets[k].cf, nets[0].cf, reps);
        ratio[k][3] = median_ratio(nets[k].cb, nets[0].cb, reps);
    }
    Net *b0 = &nets[0];
    double f = median(b0->tf, reps), b = median(b0->tb, reps);
    printf("process CPU time (all threads): forward %.3f s, forward+backward %.3f s\n", median(b0->cf, reps),
           median(b0->cb, reps));
    /* median() sorted them: [0] is the fastest, the one other programs disturbed least */
    printf("process CPU time, fastest repetition: forward %.3f s, forward+backward %.3f s\n", b0->cf[0], b0->cb[0]);
    double gemm = sgemm_rate(nf, H * H, 9 * nf, reps);
    printf("network nf %d, %dx%dx%d, batch %d, norm %s: %.2f GFLOP forward per image (direct convolution)\n", nf, C,
           H, H, N, norm_kind_name(m0->cfg.norm), conv_flops / 1e9);
    printf("forward:          %.3f s  %7.2f images/s  %6.1f GFLOP/s effective\n", f, N / f, conv_flops * N / f / 1e9);
    printf("forward+backward: %.3f s  %7.2f images/s  %6.1f GFLOP/s effective\n", b, N / b,
           3 * conv_flops * N / b / 1e9);
    printf("cblas_sgemm %dx%dx%d: %.1f GFLOP/s; network forward at %.0f%% of it, forward+backward at %.0f%%\n", nf,
           H * H, 9 * nf, gemm, 100 * conv_flops * N / f / 1e9 / gemm, 100 * 3 * conv_flops * N / b / 1e9 / gemm);
    printf("activation arena: %.0f MB\n", b0->run.act.cap * 4.0 / 1e6);
    for (int k = 1; k < nn; k++) {
        Net *t = &nets[k];
        printf("norm %s: forward %.3f s, forward+backward %.3f s (process CPU %.3f s, %.3f s); "
               "over norm %s, median of %d alternating repetitions: forward %.3fx, forward+backward %.3fx "
               "(CPU %.3fx, %.3fx)\n",
               norm_kind_name(t->m.cfg.norm), median(t->tf, reps), median(t->tb, reps), median(t->cf, reps),
               median(t->cb, reps), norm_kind_name(m0->cfg.norm), reps, ratio[k][0], ratio[k][1], ratio[k][2],
               ratio[k][3]);
    }
    for (int k = 0; k < nn; k++) {
        Net *t = &nets[k];
        dsm_work_free(&t->w);
        model_run_free(&t->run);
        model_free(&t->m);
        free(t->tf), free(t->tb), free(t->cf), free(t->cb);
    }
    free(x), free(z), free(out), free(labels);
    return 0;
}
