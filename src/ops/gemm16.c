/* gemm16.c: the Winograd products (gemm16.h), by a register-blocked
 * AVX-512 kernel where the CPU has it, else by cblas_sgemm.
 *
 * The kernel walks C in blocks of up to RMAX rows by OBMAX vectors of 16
 * columns, holding a block in RMAX * OBMAX = 24 registers while k runs:
 * per k it loads OBMAX vectors of B's row k, broadcasts the block's RMAX
 * values A(i, k) and does RMAX * OBMAX fused multiply-adds. Every block
 * shape is its own function (the loops unroll fully), so a block of 4
 * rows (a sample's 4 tiles at 8x8) runs as fast per flop as one of 6.
 * Measured against OpenBLAS 0.3.21 (Cooperlake kernels, 1 thread) in
 * bench/bench_gemm16.c: 1.2-1.4x at a sample's 16 tiles and 128 channels,
 * but 0.5-0.9x for the weight gradient's product and at 64 tiles by 256
 * channels, where OpenBLAS's packing keeps the strided operands in cache
 * (the slices' rows are 36 * C floats apart). In the network the kernel
 * wins: bench_net (nf 128, batch 8, 1 thread) forward 1.00-1.06 s -> 0.79-0.91
 * s CPU, forward and backward 2.63-2.76 -> 2.32-2.47 s (docs/performance.md). */
#define _POSIX_C_SOURCE 200809L
#include "gemm16.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_KERNEL 1
#define RMAX 6
#define OBMAX 4

#define AVX512 __attribute__((target("avx512f")))

/* One block of r rows and ob vectors; r and ob are constants where it is
 * inlined (below), so acc and u live in registers. */
AVX512 __attribute__((always_inline)) static inline void block(int r, int ob, int kk, const float *A, size_t ars,
                                                              size_t acs, const float *B, size_t ldb, float beta,
                                                              float *C, size_t ldc)
{
    __m512 acc[RMAX][OBMAX];
    for (int i = 0; i < r; i++)
        for (int j = 0; j < ob; j++) acc[i][j] = _mm512_setzero_ps();
    for (int k = 0; k < kk; k++) {
        const float *b = B + (size_t)k * ldb, *a = A + (size_t)k * acs;
        __m512 u[OBMAX];
        for (int j = 0; j < ob; j++) u[j] = _mm512_loadu_ps(b + 16 * j);
        for (int i = 0; i < r; i++) {
            __m512 x = _mm512_set1_ps(a[(size_t)i * ars]);
            for (int j = 0; j < ob; j++) acc[i][j] = _mm512_fmadd_ps(x, u[j], acc[i][j]);
        }
    }
    for (int i = 0; i < r; i++)
        for (int j = 0; j < ob; j++) {
            float *c = C + (size_t)i * ldc + 16 * j;
            _mm512_storeu_ps(c, beta != 0.0f ? _mm512_add_ps(_mm512_loadu_ps(c), acc[i][j]) : acc[i][j]);
        }
}

typedef void (*BlockFn)(int kk, const float *A, size_t ars, size_t acs, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc);

#define BLOCK_FN(R, OB)                                                                                          \
    AVX512 static void block_##R##_##OB(int kk, const float *A, size_t ars, size_t acs, const float *B,         \
                                        size_t ldb, float beta, float *C, size_t ldc)                          \
    {                                                                                                            \
        block(R, OB, kk, A, ars, acs, B, ldb, beta, C, ldc);                                                     \
    }
#define BLOCK_ROW(R) BLOCK_FN(R, 1) BLOCK_FN(R, 2) BLOCK_FN(R, 3) BLOCK_FN(R, 4)
BLOCK_ROW(1)
BLOCK_ROW(2)
BLOCK_ROW(3)
BLOCK_ROW(4)
BLOCK_ROW(5)
BLOCK_ROW(6)

#define ROW_FNS(R) {block_##R##_1, block_##R##_2, block_##R##_3, block_##R##_4}
static const BlockFn BLOCKS[RMAX][OBMAX] = {ROW_FNS(1), ROW_FNS(2), ROW_FNS(3), ROW_FNS(4), ROW_FNS(5), ROW_FNS(6)};

/* Column panels of OBMAX vectors outside, so a panel of B is read from
 * cache by every row block. */
static void gemm16_kernel(int m, int n, int kk, const float *A, size_t ars, size_t acs, const float *B, size_t ldb,
                          float beta, float *C, size_t ldc)
{
    int nv = n / 16;
    for (int j0 = 0; j0 < nv; j0 += OBMAX) {
        int ob = nv - j0 < OBMAX ? nv - j0 : OBMAX;
        for (int i0 = 0; i0 < m; i0 += RMAX) {
            int r = m - i0 < RMAX ? m - i0 : RMAX;
            BLOCKS[r - 1][ob - 1](kk, A + (size_t)i0 * ars, ars, acs, B + (size_t)j0 * 16, ldb, beta,
                                  C + (size_t)i0 * ldc + (size_t)j0 * 16, ldc);
        }
    }
}

#else
#define HAVE_KERNEL 0
#endif

static void gemm16_blas(int m, int n, int kk, const float *A, size_t ars, size_t acs, const float *B, size_t ldb,
                        float beta, float *C, size_t ldc)
{
    int trans = acs != 1; /* A(i, k) = A[k * acs + i]: its transpose is row-major */
    cblas_sgemm(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, CblasNoTrans, m, n, kk, 1.0f, A,
                (int)(trans ? acs : ars), B, (int)ldb, beta, C, (int)ldc);
}

static atomic_int own = -1; /* -1: not yet decided */

int gemm16_own(void)
{
    int v = atomic_load_explicit(&own, memory_order_relaxed);
    if (v >= 0) return v;
    const char *env = getenv("NCSN_GEMM");
    if (env && strcmp(env, "blas") != 0 && strcmp(env, "own") != 0)
        ncsn_die_usage("NCSN_GEMM=%s: expected 'own' (the AVX-512 kernel where the CPU has it) or 'blas'", env);
    v = !(env && strcmp(env, "blas") == 0);
#if HAVE_KERNEL
    __builtin_cpu_init();
    v = v && __builtin_cpu_supports("avx512f");
#else
    v = 0;
#endif
    atomic_store_explicit(&own, v, memory_order_relaxed);
    return v;
}

void gemm16(int m, int n, int kk, const float *A, size_t ars, size_t acs, const float *B, size_t ldb, float beta,
            float *C, size_t ldc)
{
    if (m <= 0 || n <= 0) return;
#if HAVE_KERNEL
    if (gemm16_own()) {
        gemm16_kernel(m, n, kk, A, ars, acs, B, ldb, beta, C, ldc);
        return;
    }
#endif
    gemm16_blas(m, n, kk, A, ars, acs, B, ldb, beta, C, ldc);
}
