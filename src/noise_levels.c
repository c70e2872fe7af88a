/* noise_levels.c: noise levels from the data (noise_levels.h). */
#include "ncsn/noise_levels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/model.h"
#include "ncsn/noise_rules.h"
#include "ncsn/rng.h"

/* The largest pairwise distance between training images, estimated on a
 * random subset of n: NCSNv2's choice of the largest noise level. */
static double max_pairwise_distance(Dataset *d, long n, uint64_t seed)
{
    if (n > d->N) n = d->N;
    if (n < 2) n = d->N < 2 ? 1 : 2;
    uint32_t *perm = xmalloc((size_t)d->N * sizeof(uint32_t));
    rng_permutation(perm, (uint32_t)d->N, seed, RNG_SIGMA_PICK, 0);
    size_t per = (size_t)d->C * d->H * d->W;
    float *x = xmalloc((size_t)n * per * sizeof(float)); /* [n, C, H, W] */
    data_read(d, x, perm, (int)n);
    double best = 0.0;
    for (long i = 0; i < n; i++)
        for (long j = i + 1; j < n; j++) {
            double s = 0.0;
            for (size_t k = 0; k < per; k++) {
                double diff = (double)x[i * per + k] - x[j * per + k];
                s += diff * diff;
            }
            if (s > best) best = s;
        }
    free(x);
    free(perm);
    return sqrt(best);
}

/* Technique 2: the number of levels from sigma_1 down to sigma_L for
 * images of D values; appends how to rule. */
static int levels_by_rule(double dmax, long D, char *rule, size_t cap)
{
    double gamma = noise_rules_ratio((double)D);
    if (gamma == 0.0)
        ncsn_die_usage("choosing the number of noise levels: images of %ld values are too small for NCSNv2's "
                       "technique 2; give --num-classes", D);
    long L = noise_rules_levels(dmax, NOISE_LEVELS_SIGMA_END, gamma);
    if (L < 2 || L > NCSN_MAX_LEVELS)
        ncsn_die_usage("choosing the number of noise levels: technique 2 gives %ld levels, outside 2..%d; "
                       "give --num-classes", L, NCSN_MAX_LEVELS);
    snprintf(rule, cap, "L = %ld levels by NCSNv2 technique 2 (D = %ld, gamma = %.6f, "
             "L = ceil(log(sigma_1/sigma_L)/log(gamma)) + 1); geometric", L, D, gamma);
    return (int)L;
}

void noise_levels_from_data(Dataset *d, double pick, uint64_t seed, int choose_L, const char *L_from, int *L,
                            float *sigmas, char *rule, size_t cap)
{
    long n_pick = (long)(pick < d->N ? pick : d->N);
    double dmax = max_pairwise_distance(d, (long)pick, seed), end = NOISE_LEVELS_SIGMA_END;
    if (!(dmax > end)) ncsn_die_usage("%s: dataset %s: images are (almost) identical; give --sigmas", d->path, d->name);
    int n = snprintf(rule, cap, "the data: sigma_1 = %.6g, the largest pairwise distance of %ld images (NCSNv2 "
                     "technique 1); sigma_L = %g; ", dmax, n_pick, end);
    if (choose_L) *L = levels_by_rule(dmax, (long)d->C * d->H * d->W, rule + n, cap - (size_t)n);
    else snprintf(rule + n, cap - (size_t)n, "L = %d levels (%s); geometric", *L, L_from);
    const char *why = make_sigmas(sigmas, dmax, end, *L);
    if (why) ncsn_die_usage("choosing noise levels: %s", why);
}
