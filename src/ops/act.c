/* act.c: ELU (alpha 1) and the element-wise helpers. expm1 for x <= 0 is
 * computed by expm1.h in a form the compiler vectorises. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ncsn/ops.h"
#include "expm1.h"

float ncsn_expm1_neg(float x) { return expm1_neg(x); }

/* Element-wise loops run on the threads when long enough (an element,
 * memory-bound, is counted as 32 flops of a product). */
#define PAR_FOR _Pragma("omp parallel for simd num_threads(ops_threads_for(2, 32.0 * n)) schedule(static)")

void elu_forward(float *out, const float *in, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = x > 0.0f ? x : expm1_neg(x);
    }
}

void elu_backward(float *din, const float *dout, const float *out, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) {
        float y = out[i];
        din[i] += dout[i] * (y > 0.0f ? 1.0f : y + 1.0f);
    }
}

void vec_add(float *y, const float *x, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void vec_zero(float *y, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) y[i] = 0.0f;
}

void vec_copy(float *y, const float *x, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) y[i] = x[i];
}
