/* expm1.h: expm1(x) for x <= 0, inlined where ELU is computed (act.c,
 * norm.c).
 *
 * ELU needs expm1(x) for x <= 0 on every activation of the network; libm's
 * expm1f is scalar and took an eighth of the training step, so it is
 * computed here in a form the compiler vectorises:
 *   x < -0.25:  exp(x) - 1 (no cancellation: the result is below -0.22),
 *               exp by x = k ln2 + r, |r| <= ln2/2, a degree-7 polynomial
 *               for e^r and the exponent bits for 2^k;
 *   else:       the Taylor series of expm1 to degree 8 (|x| <= 0.25).
 * Relative error below 2e-7 against expm1 in double (tests/test_grad.c). */
#ifndef NCSN_EXPM1_H
#define NCSN_EXPM1_H

#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float exp_neg(float x) /* x in [-88, 0] */
{
    /* round to nearest by adding and subtracting 1.5 * 2^23 (no libm call,
     * so the loop vectorises; exact for |k| < 2^22) */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f; /* ln2 split hi + lo */
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline __attribute__((always_inline)) float expm1_neg(float x)
{
    if (x < -0.25f) return x < -87.0f ? -1.0f : exp_neg(x) - 1.0f;
    float p = 1.0f / 40320;
    p = p * x + 1.0f / 5040;
    p = p * x + 1.0f / 720;
    p = p * x + 1.0f / 120;
    p = p * x + 1.0f / 24;
    p = p * x + 1.0f / 6;
    p = p * x + 0.5f;
    p = p * x + 1.0f;
    return p * x;
}

#endif
