/* gemm16.h: the products of the Winograd convolutions (winograd.c).
 *
 * C[i][.] = beta C[i][.] + sum_k A(i, k) B[k][.]   for i < m, k < kk,
 * over n columns (a multiple of 16), where A(i, k) = A[i * ars + k * acs]
 * (either stride may be 1: A or its transpose, row-major), row k of B
 * starts at B + k * ldb and row i of C at C + i * ldc; beta is 0 or 1.
 *
 * These products are small in one dimension (the tiles of one sample: 4
 * to 64 at nf 128, 32x32), where OpenBLAS's sgemm packs both operands for
 * every call and reaches half its large-matrix rate. On a CPU with
 * AVX-512 they run in a register-blocked kernel of our own that reads the
 * operands where they lie; elsewhere, or with NCSN_GEMM=blas in the
 * environment, by cblas_sgemm. Each product sums over k in order, so a
 * result does not depend on which thread or which batch computes it. */
#ifndef NCSN_OPS_GEMM16_H
#define NCSN_OPS_GEMM16_H

#include <stddef.h>

void gemm16(int m, int n, int kk, const float *A, size_t ars, size_t acs, const float *B, size_t ldb, float beta,
            float *C, size_t ldc);
/* 1 when gemm16 runs the kernel of our own, 0 when it calls cblas_sgemm. */
int gemm16_own(void);

#endif
