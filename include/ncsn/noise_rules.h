/* noise_rules.h: NCSNv2's rules for the noise levels and the step size
 * (Song & Ermon 2020, "Improved techniques for training score-based
 * generative models", techniques 2 and 4). Plain functions of numbers:
 * `ncsn train` and `ncsn sample` apply them, tests/test_rules.c checks them
 * against the paper's own CIFAR-10 choice. */
#ifndef NCSN_NOISE_RULES_H
#define NCSN_NOISE_RULES_H

/* Technique 2: the ratio gamma = sigma_{i-1}/sigma_i > 1 of consecutive
 * levels at which a sample of N(0, sigma_i^2 I) in dimension D has its norm
 * in the 3-standard-deviation shell of level i-1 with probability 1/2:
 *   Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma) = 0.5.
 * Solved by bisection to double precision. Returns 0 when no gamma > 1
 * satisfies it (D < 5: the shells never separate that far). */
double noise_rules_ratio(double D);

/* Probability above for a given gamma and D (the function whose root
 * noise_rules_ratio finds). */
double noise_rules_overlap(double D, double gamma);

/* The number of levels of a geometric sequence from sigma_1 down to sigma_L
 * whose ratio is at most gamma: ceil(log(sigma_1/sigma_L) / log(gamma)) + 1
 * (rounded up, so that consecutive levels overlap at least as much as the
 * rule asks). Returns 0 when the arguments make no sequence. */
long noise_rules_levels(double sigma_1, double sigma_L, double gamma);

/* Technique 4 (the paper's Proposition 3): after T Langevin steps of size
 * alpha_i = eps sigma_i^2/sigma_L^2 at level i, started from N(0,
 * sigma_{i-1}^2 I) with the score of N(0, sigma_i^2 I), the state is
 * N(0, s_T^2 I) with
 *   s_T^2/sigma_i^2 = (1 - eps/sigma_L^2)^(2T) (gamma^2 - 2 eps/(sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2))
 *                     + 2 eps/(sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2),
 * gamma = sigma_{i-1}/sigma_i (the same at every level of a geometric
 * sequence). Returns that ratio. */
double noise_rules_variance_ratio(double eps, double sigma_L, double gamma, long T);

/* The eps in (0, sigma_L^2) that brings that ratio closest to 1 for T steps
 * per level. With gamma > 1 the ratio exceeds 1 for every eps, so this is
 * its minimiser; *ratio (when not NULL) gets the ratio there. Returns 0 when
 * gamma <= 1, T < 1 or sigma_L <= 0. */
double noise_rules_step_lr(double sigma_L, double gamma, long T, double *ratio);

#endif
