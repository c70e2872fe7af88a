/* test_rng.c: Philox4x32-10 against the known-answer vectors published with
 * Random123 (Salmon et al., SC'11), and sanity of the derived draws. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/rng.h"

static int failed = 0;

static void kat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint64_t key, const uint32_t want[4])
{
    uint32_t out[4];
    /* rng_block places (index, purpose, a, b) in counter words 0..3. */
    rng_block(out, key, c1, c2, c3, c0);
    int ok = out[0] == want[0] && out[1] == want[1] && out[2] == want[2] && out[3] == want[3];
    printf("philox KAT %08x %08x %08x %08x -> %08x %08x %08x %08x %s\n", c0, c1, c2, c3, out[0], out[1],
           out[2], out[3], ok ? "ok" : "FAIL");
    failed |= !ok;
}

int main(void)
{
    const uint32_t zero[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    const uint32_t ones[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
    const uint32_t pi[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
    kat(0, 0, 0, 0, 0, zero);
    kat(~0u, ~0u, ~0u, ~0u, ~0ull, ones);
    /* key words (k0, k1) = (0xa4093822, 0x299f31d0): seed = k1 << 32 | k0 */
    kat(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, ((uint64_t)0x299f31d0u << 32) | 0xa4093822u, pi);

    /* Normal draws: mean ~0, variance ~1 over 200k values. */
    size_t n = 200000;
    float *z = xmalloc(n * sizeof(float));
    rng_fill_normal(z, n, 42, RNG_NOISE, 3, 7);
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += z[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) v += (z[i] - m) * (z[i] - m);
    v /= (double)n;
    int ok = fabs(m) < 0.01 && fabs(v - 1) < 0.02;
    printf("normal mean %.4f var %.4f %s\n", m, v, ok ? "ok" : "FAIL");
    failed |= !ok;
    /* Uniform in [-1, 1). */
    rng_fill_uniform(z, n, 42, RNG_SAMPLE_INIT, 0, 1, -1.0f, 1.0f);
    float lo = 1, hi = -1;
    for (size_t i = 0; i < n; i++) {
        lo = z[i] < lo ? z[i] : lo;
        hi = z[i] > hi ? z[i] : hi;
    }
    ok = lo >= -1.0f && hi < 1.0f && lo < -0.999f && hi > 0.999f;
    printf("uniform range [%.5f, %.5f] %s\n", lo, hi, ok ? "ok" : "FAIL");
    failed |= !ok;
    /* Permutation is a permutation. */
    uint32_t *perm = xmalloc(1000 * sizeof(uint32_t));
    int *seen = calloc(1000, sizeof(int));
    rng_permutation(perm, 1000, 9, RNG_ORDER, 2);
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= perm[i] < 1000 && !seen[perm[i]]++;
    printf("permutation %s\n", ok ? "ok" : "FAIL");
    failed |= !ok;
    free(z);
    free(perm);
    free(seen);
    return failed;
}
