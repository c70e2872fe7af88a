/* pool.c: 5x5 max pooling, stride 1, padding 2 (PyTorch max_pool2d
 * semantics: padded positions never win; the first maximum in row-major
 * window order takes the gradient).
 *
 * Separable: rowmax[h][w] = max of x[h][w-2..w+2], out = max of
 * rowmax[h-2..h+2][w] (10 comparisons instead of 25). The first row-major
 * maximum of the window is in the first row whose rowmax equals the
 * maximum, at the first column of that row that holds it, so the backward
 * pass recomputes the winners the same way instead of storing indices.
 * Both passes are written as selects over a run of pixels so that they
 * vectorise; the planes (sample, channel) are split over the threads. */
#include <omp.h>
#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "isa.h"

/* The window [i - 2, i + 2] clipped to [0, n). */
static inline int lo2(int i) { return i - 2 < 0 ? 0 : i - 2; }
static inline int hi2(int i, int n) { return i + 2 >= n ? n - 1 : i + 2; }

/* rowmax[w] and the first winning column of x's row r, for one column */
static inline void row_edge(float *m, int *a, const float *r, int w, int W)
{
    int best = lo2(w);
    for (int j = best + 1; j <= hi2(w, W); j++)
        if (r[j] > r[best]) best = j;
    m[w] = r[best];
    if (a) a[w] = best;
}

/* rowmax and (when arg) the first winning column, for one H x W plane */
static void row_pass(float *rowmax, int *arg, const float *x, int H, int W)
{
    int in0 = W > 4 ? 2 : W, in1 = W > 4 ? W - 2 : W; /* columns whose window is whole */
    for (int h = 0; h < H; h++) {
        const float *restrict r = x + (size_t)h * W;
        float *restrict m = rowmax + (size_t)h * W;
        int *restrict a = arg ? arg + (size_t)h * W : NULL;
        for (int w = 0; w < in0; w++) row_edge(m, a, r, w, W);
        for (int w = in1; w < W; w++) row_edge(m, a, r, w, W);
        if (a) {
            for (int w = in0; w < in1; w++) {
                float cur = r[w - 2];
                int best = w - 2;
                for (int o = -1; o <= 2; o++) {
                    int take = r[w + o] > cur;
                    cur = take ? r[w + o] : cur;
                    best = take ? w + o : best;
                }
                m[w] = cur;
                a[w] = best;
            }
        } else {
            for (int w = in0; w < in1; w++) {
                float cur = r[w - 2];
                for (int o = -1; o <= 2; o++) cur = r[w + o] > cur ? r[w + o] : cur;
                m[w] = cur;
            }
        }
    }
}

/* cur, row (+)= the running maximum of window rows and its first row, after row i (r) */
static void col_select(float *restrict cur, int *restrict row, const float *restrict r, int i, int W)
{
    for (int w = 0; w < W; w++) {
        int take = r[w] > cur[w];
        cur[w] = take ? r[w] : cur[w];
        row[w] = take ? i : row[w];
    }
}

static int pool_threads(Shape s) { return ops_threads_for(s.N * s.C, 40.0 * s.H * s.W); }

OPS_KERNEL void maxpool5_forward(float *out, const float *in, Shape s)
{
    size_t M = (size_t)s.H * s.W;
    long planes = (long)s.N * s.C;
#pragma omp parallel num_threads(pool_threads(s))
    {
        float *rowmax = xmalloc(M * sizeof(float));
#pragma omp for schedule(static)
        for (long p = 0; p < planes; p++) {
            row_pass(rowmax, NULL, in + p * M, s.H, s.W);
            float *y = out + p * M;
            for (int h = 0; h < s.H; h++) {
                int i0 = lo2(h), i1 = hi2(h, s.H);
                float *yr = y + (size_t)h * s.W;
                const float *first = rowmax + (size_t)i0 * s.W;
                for (int w = 0; w < s.W; w++) yr[w] = first[w];
                for (int i = i0 + 1; i <= i1; i++) {
                    const float *r = rowmax + (size_t)i * s.W;
                    for (int w = 0; w < s.W; w++) yr[w] = r[w] > yr[w] ? r[w] : yr[w];
                }
            }
        }
        free(rowmax);
    }
}

OPS_KERNEL void maxpool5_backward(float *din, const float *dout, const float *in, Shape s)
{
    size_t M = (size_t)s.H * s.W;
    long planes = (long)s.N * s.C;
#pragma omp parallel num_threads(pool_threads(s))
    {
        float *rowmax = xmalloc(M * sizeof(float)), *cur = xmalloc((size_t)s.W * sizeof(float));
        int *arg = xmalloc(M * sizeof(int)), *row = xmalloc((size_t)s.W * sizeof(int));
#pragma omp for schedule(static)
        for (long p = 0; p < planes; p++) {
            row_pass(rowmax, arg, in + p * M, s.H, s.W);
            const float *dy = dout + p * M;
            float *dx = din + p * M;
            for (int h = 0; h < s.H; h++) {
                /* row[w]: the first row of window (h, w) holding its maximum */
                int i0 = lo2(h), i1 = hi2(h, s.H);
                const float *first = rowmax + (size_t)i0 * s.W;
                for (int w = 0; w < s.W; w++) {
                    cur[w] = first[w];
                    row[w] = i0;
                }
                for (int i = i0 + 1; i <= i1; i++) col_select(cur, row, rowmax + (size_t)i * s.W, i, s.W);
                for (int w = 0; w < s.W; w++) {
                    size_t q = (size_t)row[w] * s.W;
                    dx[q + arg[q + w]] += dy[(size_t)h * s.W + w];
                }
            }
        }
        free(rowmax);
        free(cur);
        free(arg);
        free(row);
    }
}
