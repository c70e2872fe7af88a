/* bench_gemm16.c: the Winograd products by gemm16 (the AVX-512 kernel of
 * our own, src/ops/gemm16.c) against cblas_sgemm on the same operands, in
 * one process, at the shapes of the nf 128, 32x32 network: T tiles of a
 * sample (64 at 32x32, 16 at 16x16 and in the dilated blocks, 4 at 8x8)
 * by 128 or 256 channels, in the three forms winograd.c calls (forward
 * M = V Ut, backward dU += dM^T V and dV = dM U). The operands are
 * strided as in a conv's slice (36 transform points interleaved).
 *
 *   ./build/bench/bench_gemm16 [repetitions=5]
 *
 * Prints GFLOP/s of each (process CPU time, the median of the
 * repetitions, the two interleaved) and their ratio. Run it with
 * NCSN_GEMM unset: with NCSN_GEMM=blas both columns are OpenBLAS. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/ops/gemm16.h"
#include "bench_stats.h"
#include "ncsn/ops.h"

#define A2 36

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef enum { FWD, DU, DV } Form;

/* One conv's products for one sample: 36 calls, by gemm16 or by sgemm. */
static void products(Form f, int own, int T, int C, const float *V, const float *U, float *M, float *dU)
{
    for (int xi = 0; xi < A2; xi++) {
        const float *v = V + (size_t)xi * C, *u = U + (size_t)xi * C * C;
        float *m = M + (size_t)xi * C, *du = dU + (size_t)xi * C * C;
        size_t ld = (size_t)A2 * C;
        if (f == FWD) {
            if (own) gemm16(T, C, C, v, ld, 1, u, C, 0.0f, m, ld);
            else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, C, 1.0f, v, ld, u, C, 0.0f, m, ld);
        } else if (f == DU) {
            if (own) gemm16(C, C, T, m, 1, ld, v, ld, 1.0f, du, C);
            else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, C, T, 1.0f, m, ld, v, ld, 1.0f, du, C);
        } else {
            if (own) gemm16(T, C, C, m, ld, 1, u, C, 0.0f, (float *)v, ld);
            else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, C, 1.0f, m, ld, u, C, 0.0f, (float *)v, ld);
        }
    }
}

int main(int argc, char **argv)
{
    ops_choose_blas_kernels(argv); /* as ncsn does: OpenBLAS's kernels for this CPU */
    const char *note = ops_blas_kernels_note();
    if (note) printf("%s\n", note);
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    if (!gemm16_own()) printf("note: gemm16 uses cblas_sgemm here (no AVX-512, or NCSN_GEMM=blas)\n");
    const int Ts[] = {64, 16, 4}, Cs[] = {128, 256};
    const char *names[] = {"forward M = V Ut", "backward dU += dM^T V", "backward dV = dM U"};
    printf("%-22s %4s %4s %12s %12s %7s\n", "product", "T", "C", "sgemm GF/s", "gemm16 GF/s", "ratio");
    for (int f = FWD; f <= DV; f++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
            for (size_t ci = 0; ci < sizeof Cs / sizeof *Cs; ci++) {
                int T = Ts[ti], C = Cs[ci];
                size_t nv = (size_t)T * A2 * C, nu = (size_t)A2 * C * C;
                float *V = malloc(sizeof(float) * nv), *M = malloc(sizeof(float) * nv),
                      *U = malloc(sizeof(float) * nu), *dU = calloc(nu, sizeof(float));
                for (size_t i = 0; i < nv; i++) V[i] = M[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
                for (size_t i = 0; i < nu; i++) U[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
                double flops = 2.0 * A2 * T * C * C;
                int inner = (int)(2e9 / flops) + 1; /* about 20 ms of products per timing */
                double rate[2][64];
                int nrep = reps < 64 ? reps : 64;
                for (int r = 0; r < nrep; r++)
                    for (int own = 0; own < 2; own++) {
                        double t0 = cpu_now();
                        for (int i = 0; i < inner; i++) products((Form)f, own, T, C, V, U, M, dU);
                        rate[own][r] = flops * inner / (cpu_now() - t0) / 1e9;
                    }
                double blas = median(rate[0], nrep), mine = median(rate[1], nrep);
                printf("%-22s %4d %4d %12.1f %12.1f %6.2fx\n", names[f], T, C, blas, mine, mine / blas);
                free(V), free(M), free(U), free(dU);
            }
    return 0;
}
