/* rng.h: counter-based random numbers (Philox4x32-10).
 *
 * Every draw is a pure function of (seed, purpose, a, b, index): no state is
 * carried from one call to the next. Training uses a = step, b = global
 * sample index, so what sample k of step t receives does not depend on the
 * number of ranks, and a resumed run draws exactly what an uninterrupted run
 * would have drawn. */
#ifndef NCSN_RNG_H
#define NCSN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RNG_INIT = 1,      /* weight initialisation: a = parameter index */
    RNG_LABELS = 2,    /* training noise level: a = step, b = sample */
    RNG_NOISE = 3,     /* training noise z: a = step, b = sample */
    RNG_ORDER = 4,     /* data permutation: a = epoch */
    RNG_SAMPLE_INIT = 5, /* sampler initial state: b = sample */
    RNG_LANGEVIN = 6,  /* sampler noise: a = global Langevin step, b = sample */
    RNG_SIGMA_PICK = 7, /* subset used to choose noise levels */
    RNG_INPAINT = 8     /* noise on the known pixels: a = level, b = sample */
} RngPurpose;

/* The four 32-bit words of block `index` of stream (seed, purpose, a, b). */
void rng_block(uint32_t out[4], uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b,
               uint32_t index);
/* n uniform floats in [lo, hi). */
void rng_fill_uniform(float *out, size_t n, uint64_t seed, uint32_t purpose, uint32_t a,
                      uint32_t b, float lo, float hi);
/* n standard normal floats (Box-Muller in double). */
void rng_fill_normal(float *out, size_t n, uint64_t seed, uint32_t purpose, uint32_t a,
                     uint32_t b);
/* A uniform integer in [0, n) (n > 0), from word 0 of block 0. */
uint32_t rng_below(uint32_t n, uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b);
/* perm[0..n) = a permutation of 0..n-1 from (seed, purpose, a). */
void rng_permutation(uint32_t *perm, uint32_t n, uint64_t seed, uint32_t purpose, uint32_t a);

#endif
