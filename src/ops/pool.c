/* pool.c: 5x5 max pooling, stride 1, padding 2 (PyTorch max_pool2d semantics:
 * padded positions never win; the first maximum in row-major window order
 * takes the gradient). The backward recomputes the argmax from the input
 * instead of storing indices. */
#include "ncsn/ops.h"

static inline int window_argmax(const float *x, int H, int W, int h, int w)
{
    int h0 = h - 2 < 0 ? 0 : h - 2, h1 = h + 2 >= H ? H - 1 : h + 2;
    int w0 = w - 2 < 0 ? 0 : w - 2, w1 = w + 2 >= W ? W - 1 : w + 2;
    int best = h0 * W + w0;
    float m = x[best];
    for (int i = h0; i <= h1; i++)
        for (int j = w0; j <= w1; j++)
            if (x[i * W + j] > m) {
                m = x[i * W + j];
                best = i * W + j;
            }
    return best;
}

void maxpool5_forward(float *out, const float *in, Shape s)
{
    size_t M = (size_t)s.H * s.W;
    for (size_t p = 0; p < (size_t)s.N * s.C; p++) {
        const float *x = in + p * M;
        float *y = out + p * M;
        for (int h = 0; h < s.H; h++)
            for (int w = 0; w < s.W; w++) y[h * s.W + w] = x[window_argmax(x, s.H, s.W, h, w)];
    }
}

void maxpool5_backward(float *din, const float *dout, const float *in, Shape s)
{
    size_t M = (size_t)s.H * s.W;
    for (size_t p = 0; p < (size_t)s.N * s.C; p++) {
        const float *x = in + p * M;
        const float *dy = dout + p * M;
        float *dx = din + p * M;
        for (int h = 0; h < s.H; h++)
            for (int w = 0; w < s.W; w++) dx[window_argmax(x, s.H, s.W, h, w)] += dy[h * s.W + w];
    }
}
