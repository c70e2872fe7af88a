/* rng.c: Philox4x32-10 (Salmon et al., SC'11) and the draws built on it. */
#include "ncsn/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t c0 = hi1 ^ ctr[1] ^ k0;
        uint32_t c2 = hi0 ^ ctr[3] ^ k1;
        ctr[0] = c0;
        ctr[1] = lo1;
        ctr[2] = c2;
        ctr[3] = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

void rng_block(uint32_t out[4], uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b,
               uint32_t index)
{
    out[0] = index;
    out[1] = purpose;
    out[2] = a;
    out[3] = b;
    philox4x32_10(out, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* (0, 1]: never zero, so log() is safe. */
static inline double unit_open0(uint32_t u) { return ((double)u + 1.0) / 4294967296.0; }

void rng_fill_uniform(float *out, size_t n, uint64_t seed, uint32_t purpose, uint32_t a,
                      uint32_t b, float lo, float hi)
{
    uint32_t w[4];
    for (size_t i = 0; i < n; i++) {
        if (i % 4 == 0) rng_block(w, seed, purpose, a, b, (uint32_t)(i / 4));
        double u = (double)w[i % 4] / 4294967296.0; /* [0, 1) */
        float v = (float)(lo + (hi - lo) * u);
        out[i] = v < hi ? v : lo; /* rounding may reach hi */
    }
}

void rng_fill_normal(float *out, size_t n, uint64_t seed, uint32_t purpose, uint32_t a,
                     uint32_t b)
{
    uint32_t w[4];
    for (size_t i = 0; i < n; i += 2) {
        if (i % 4 == 0) rng_block(w, seed, purpose, a, b, (uint32_t)(i / 4));
        double r = sqrt(-2.0 * log(unit_open0(w[i % 4])));
        double t = 6.283185307179586476925 * unit_open0(w[i % 4 + 1]);
        out[i] = (float)(r * cos(t));
        if (i + 1 < n) out[i + 1] = (float)(r * sin(t));
    }
}

uint32_t rng_below(uint32_t n, uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b)
{
    uint32_t w[4];
    rng_block(w, seed, purpose, a, b, 0);
    uint64_t wide = ((uint64_t)w[0] << 32) | w[1];
    return (uint32_t)(wide % n); /* bias below 2^-32 */
}

void rng_permutation(uint32_t *perm, uint32_t n, uint64_t seed, uint32_t purpose, uint32_t a)
{
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    /* Fisher-Yates; draw j for position i from block i. */
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_below(i, seed, purpose, a, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
