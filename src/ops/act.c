/* act.c: ELU (alpha 1) and the element-wise helpers. expm1 for x <= 0 is
 * computed by expm1.h in a form the compiler vectorises. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ncsn/ops.h"
#include "isa.h"
#include "expm1.h"

float ncsn_expm1_neg(float x) { return expm1_neg(x); }

/* Element-wise loops run on every configured thread when long enough: the
 * work is counted in chunks of ELEMENTWISE_CHUNK elements, each element
 * (memory-bound) as 32 flops of a product, so a loop of n elements gets up
 * to n / ELEMENTWISE_CHUNK threads and none below ops_threads_for's floor. */
#define ELEMENTWISE_CHUNK 4096
static int elementwise_threads(size_t n)
{
    size_t chunks = n / ELEMENTWISE_CHUNK;
    return ops_threads_for(chunks > INT32_MAX ? INT32_MAX : (int)chunks, 32.0 * ELEMENTWISE_CHUNK);
}
#define PAR_FOR _Pragma("omp parallel for simd num_threads(elementwise_threads(n)) schedule(static)")

OPS_KERNEL void elu_forward(float *out, const float *in, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = x > 0.0f ? x : expm1_neg(x);
    }
}

OPS_KERNEL void elu_backward(float *din, const float *dout, const float *out, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) {
        float y = out[i];
        din[i] += dout[i] * (y > 0.0f ? 1.0f : y + 1.0f);
    }
}

OPS_KERNEL void vec_add(float *y, const float *x, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

OPS_KERNEL void vec_zero(float *y, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) y[i] = 0.0f;
}

OPS_KERNEL void vec_copy(float *y, const float *x, size_t n)
{
    PAR_FOR
    for (size_t i = 0; i < n; i++) y[i] = x[i];
}
