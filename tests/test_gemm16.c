/* test_gemm16.c: the Winograd products (src/ops/gemm16.h) against a
 * double-precision reference, for the three forms winograd.c calls (A
 * row-major, A transposed; beta 0 and 1) at block-edge shapes: rows 1-7,
 * 16 and 64 (the kernel's blocks are 6 rows), 1-5 and 8 vectors of
 * columns (blocks of 4), and k from 0 to 37.
 *   - every result within 1e-5 of the largest term's magnitude;
 *   - the operands' padding is NaN, so reading outside A's m x k or a
 *     row of B beyond n poisons a result; C's padding must come back
 *     untouched.
 * Run once as the environment chooses (the kernel of our own on AVX-512)
 * and once with NCSN_GEMM=blas (ctest does both); with NCSN_GEMM=own on an
 * AVX-512 CPU the test also fails if the kernel is not the one in use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/gemm16.h"

static int g_failed = 0;

static float uniform(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 16777216.0f - 0.5f;
}

static void check(int m, int n, int kk, int transposed, float beta, unsigned seed)
{
    const int pad = 3; /* extra rows/columns of NaN (A, B) or sentinel (C) */
    size_t lda = (size_t)(transposed ? m : kk) + pad, ldb = (size_t)n + 16 + pad, ldc = (size_t)n + pad;
    size_t arows = (size_t)(transposed ? kk : m) + 1;
    float *A = malloc(sizeof(float) * arows * lda), *B = malloc(sizeof(float) * ((size_t)kk + 1) * ldb),
          *C = malloc(sizeof(float) * ((size_t)m + 1) * ldc), *C0 = malloc(sizeof(float) * ((size_t)m + 1) * ldc);
    for (size_t i = 0; i < arows * lda; i++) A[i] = NAN;
    for (size_t i = 0; i < ((size_t)kk + 1) * ldb; i++) B[i] = NAN;
    size_t ars = transposed ? 1 : lda, acs = transposed ? lda : 1;
    for (int i = 0; i < m; i++)
        for (int k = 0; k < kk; k++) A[i * ars + k * acs] = uniform(&seed);
    for (int k = 0; k < kk; k++)
        for (int j = 0; j < n; j++) B[k * ldb + j] = uniform(&seed);
    for (size_t i = 0; i < ((size_t)m + 1) * ldc; i++) C0[i] = C[i] = uniform(&seed);

    gemm16(m, n, kk, A, ars, acs, B, ldb, beta, C, ldc);

    double worst = 0.0;
    for (int i = 0; i <= m; i++)
        for (size_t j = 0; j < ldc; j++) {
            float got = C[i * ldc + j];
            if (i == m || (int)j >= n) { /* padding */
                if (memcmp(&got, &C0[i * ldc + j], sizeof got) != 0) worst = INFINITY;
                continue;
            }
            double want = beta * C0[i * ldc + j], scale = fabs(want);
            for (int k = 0; k < kk; k++) {
                double term = (double)A[i * ars + k * acs] * B[k * ldb + j];
                want += term;
                scale += fabs(term);
            }
            double err = fabs(got - want) / (scale > 1e-30 ? scale : 1.0);
            if (!(err <= worst)) worst = isnan(err) ? INFINITY : err;
        }
    if (!(worst <= 1e-5)) {
        printf("FAIL m %d n %d k %d %s beta %g: worst relative error %.3g\n", m, n, kk,
               transposed ? "A^T" : "A", beta, worst);
        g_failed = 1;
    }
    free(A), free(B), free(C), free(C0);
}

int main(void)
{
    const char *env = getenv("NCSN_GEMM");
    int own = gemm16_own();
    printf("gemm16: %s (NCSN_GEMM=%s)\n", own ? "the AVX-512 kernel" : "cblas_sgemm", env ? env : "unset");
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (env && strcmp(env, "own") == 0 && __builtin_cpu_supports("avx512f") && !own) {
        printf("FAIL: NCSN_GEMM=own on an AVX-512 CPU, but the kernel is not in use\n");
        g_failed = 1;
    }
#endif
    if (env && strcmp(env, "blas") == 0 && own) {
        printf("FAIL: NCSN_GEMM=blas, but the kernel is in use\n");
        g_failed = 1;
    }
    const int rows[] = {1, 2, 3, 4, 5, 6, 7, 16, 64}, vecs[] = {1, 2, 3, 4, 5, 8}, ks[] = {0, 1, 3, 16, 37};
    unsigned seed = 1;
    int cases = 0;
    for (size_t a = 0; a < sizeof rows / sizeof *rows; a++)
        for (size_t b = 0; b < sizeof vecs / sizeof *vecs; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++)
                for (int tr = 0; tr < 2; tr++)
                    for (int beta = 0; beta < 2; beta++, cases++)
                        check(rows[a], 16 * vecs[b], ks[c], tr, (float)beta, seed++);
    printf("%s: %d products\n", g_failed ? "FAILED" : "passed", cases);
    return g_failed;
}
