/* pool.c: 5x5 max pooling, stride 1, padding 2 (PyTorch max_pool2d
 * semantics: padded positions never win; the first maximum in row-major
 * window order takes the gradient).
 *
 * Separable: rowmax[h][w] = max of x[h][w-2..w+2], out = max of
 * rowmax[h-2..h+2][w] (10 comparisons instead of 25). The first row-major
 * maximum of the window is in the first row whose rowmax equals the
 * maximum, at the first column of that row that holds it, so the backward
 * pass recomputes the winners the same way instead of storing indices. */
#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"

/* rowmax and (when arg) the first winning column, for one H x W plane */
static void row_pass(float *rowmax, int *arg, const float *x, int H, int W)
{
    for (int h = 0; h < H; h++) {
        const float *r = x + (size_t)h * W;
        for (int w = 0; w < W; w++) {
            int j0 = w - 2 < 0 ? 0 : w - 2, j1 = w + 2 >= W ? W - 1 : w + 2;
            int best = j0;
            for (int j = j0 + 1; j <= j1; j++)
                if (r[j] > r[best]) best = j;
            rowmax[(size_t)h * W + w] = r[best];
            if (arg) arg[(size_t)h * W + w] = best;
        }
    }
}

void maxpool5_forward(float *out, const float *in, Shape s)
{
    size_t M = (size_t)s.H * s.W;
    float *rowmax = xmalloc(M * sizeof(float));
    for (size_t p = 0; p < (size_t)s.N * s.C; p++) {
        row_pass(rowmax, NULL, in + p * M, s.H, s.W);
        float *y = out + p * M;
        for (int h = 0; h < s.H; h++) {
            int i0 = h - 2 < 0 ? 0 : h - 2, i1 = h + 2 >= s.H ? s.H - 1 : h + 2;
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

void maxpool5_backward(float *din, const float *dout, const float *in, Shape s)
{
    size_t M = (size_t)s.H * s.W;
    float *rowmax = xmalloc(M * sizeof(float));
    int *arg = xmalloc(M * sizeof(int));
    for (size_t p = 0; p < (size_t)s.N * s.C; p++) {
        row_pass(rowmax, arg, in + p * M, s.H, s.W);
        const float *dy = dout + p * M;
        float *dx = din + p * M;
        for (int h = 0; h < s.H; h++) {
            int i0 = h - 2 < 0 ? 0 : h - 2, i1 = h + 2 >= s.H ? s.H - 1 : h + 2;
            for (int w = 0; w < s.W; w++) {
                int best = i0;
                for (int i = i0 + 1; i <= i1; i++)
                    if (rowmax[(size_t)i * s.W + w] > rowmax[(size_t)best * s.W + w]) best = i;
                dx[(size_t)best * s.W + arg[(size_t)best * s.W + w]] += dy[(size_t)h * s.W + w];
            }
        }
    }
    free(rowmax);
    free(arg);
}
