/* noise_levels.h: the noise levels a fresh `ncsn train` takes from its data
 * when no option and no --model file gives them: NCSNv2's technique 1 for
 * the largest (the largest pairwise distance between training images), a
 * fixed smallest, and technique 2 (noise_rules.h) for their number when
 * that is free too. Geometric in between. */
#ifndef NCSN_NOISE_LEVELS_H
#define NCSN_NOISE_LEVELS_H

#include <stddef.h>
#include <stdint.h>

#include "ncsn/data.h"

/* sigma_L of levels chosen from the data (the NCSN papers' choice for
 * images in [-1, 1] or [0, 1]). */
#define NOISE_LEVELS_SIGMA_END 0.01

/* Fills sigmas[*L]. sigma_1 is the largest pairwise distance among `pick`
 * images (at most the dataset's, at least 2) drawn by `seed`. With
 * choose_L, *L is set by technique 2 for D = C*H*W; else *L is kept and
 * `L_from` says in `rule` where it came from ("--num-classes"). `rule`
 * gets one line saying how the levels were chosen. Exits 2, naming the
 * dataset or the option to give, when the data admit no choice. */
void noise_levels_from_data(Dataset *d, double pick, uint64_t seed, int choose_L, const char *L_from, int *L,
                            float *sigmas, char *rule, size_t cap);

#endif
