/* act.c: ELU (alpha 1) and the element-wise helpers. */
#include <math.h>

#include "ncsn/ops.h"

void elu_forward(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = x > 0.0f ? x : expm1f(x);
    }
}

void elu_backward(float *din, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float y = out[i];
        din[i] += dout[i] * (y > 0.0f ? 1.0f : y + 1.0f);
    }
}

void vec_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
