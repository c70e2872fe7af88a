/* noise_rules.c: NCSNv2's techniques 2 (how many noise levels) and 4 (which
 * step size), as plain numeric functions (include/ncsn/noise_rules.h).
 *
 * Technique 2 rests on the paper's Proposition 2: for x ~ N(0, sigma^2 I) in
 * D dimensions, |x| is close to N(sqrt(D) sigma, sigma^2/2). Level i-1's
 * samples lie in the shell sqrt(D) sigma_{i-1} +- 3 sigma_{i-1}/sqrt(2); the
 * probability that a sample of level i lands there is, in units of level
 * i's spread sigma_i/sqrt(2), Phi(sqrt(2D)(gamma-1) +- 3 gamma) with
 * gamma = sigma_{i-1}/sigma_i. The rule asks for 1/2.
 *
 * Technique 4 rests on Proposition 3: with the score -x/sigma_i^2 of
 * N(0, sigma_i^2 I), one Langevin step x <- x + alpha s + sqrt(2 alpha) z
 * maps the variance v to r^2 v + 2 alpha, r = 1 - alpha/sigma_i^2
 * = 1 - eps/sigma_L^2 =: 1 - u. From v_0 = gamma^2 sigma_i^2, after T steps
 *   v_T/sigma_i^2 = r^(2T) (gamma^2 - k) + k,  k = 2u/(1 - r^2) = 2/(2 - u),
 * which is the paper's expression (its 2 eps/(sigma_L^2 - sigma_L^2 r^2)
 * equals k) and depends on eps only through u. */
#include "ncsn/noise_rules.h"

#include <math.h>

static double phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

double noise_rules_overlap(double D, double gamma)
{
    double a = sqrt(2.0 * D) * (gamma - 1.0);
    return phi(a + 3.0 * gamma) - phi(a - 3.0 * gamma);
}

double noise_rules_ratio(double D)
{
    if (!(D >= 1.0)) return 0.0;
    /* overlap(1) = Phi(3) - Phi(-3) = 0.9973; for sqrt(2D) > 3 it falls to 0
     * as gamma grows. Bracket the crossing, then halve. */
    double lo = 1.0, hi = 2.0;
    while (noise_rules_overlap(D, hi) >= 0.5) {
        lo = hi;
        hi *= 2.0;
        if (hi > 1e12) return 0.0;
    }
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (noise_rules_overlap(D, mid) >= 0.5) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

long noise_rules_levels(double sigma_1, double sigma_L, double gamma)
{
    if (!(sigma_L > 0.0 && sigma_1 > sigma_L && gamma > 1.0 && isfinite(sigma_1))) return 0;
    double n = log(sigma_1 / sigma_L) / log(gamma);
    if (!(n < 1e12)) return 0;
    return (long)ceil(n) + 1;
}

double noise_rules_variance_ratio(double eps, double sigma_L, double gamma, long T)
{
    double u = eps / (sigma_L * sigma_L);
    double r2t = pow(1.0 - u, 2.0 * (double)T);
    double k = 2.0 / (2.0 - u);
    return r2t * (gamma * gamma - k) + k;
}

/* The ratio minus 1, written as a sum of two non-negative terms so that it
 * keeps its digits near the minimum: r^(2T) (gamma^2 - 1) + (1 - r^(2T)) (k - 1). */
static double excess(double u, double gamma, long T)
{
    double lr = 2.0 * (double)T * log1p(-u); /* log r^(2T) */
    return exp(lr) * (gamma * gamma - 1.0) - expm1(lr) * (u / (2.0 - u));
}

double noise_rules_step_lr(double sigma_L, double gamma, long T, double *ratio)
{
    if (ratio) *ratio = 0.0;
    if (!(sigma_L > 0.0 && gamma > 1.0 && T >= 1)) return 0.0;
    /* u = eps/sigma_L^2 in (0, 1): a scan on a log grid finds the basin,
     * a golden-section search inside its neighbours the minimum. */
    enum { N = 1200 };
    const double lo_u = 1e-12;
    double best = INFINITY, a = lo_u, b = lo_u;
    for (int j = 0; j < N; j++) {
        double u = exp(log(lo_u) * (1.0 - (double)j / N));
        double h = excess(u, gamma, T);
        if (h < best) {
            best = h;
            a = exp(log(lo_u) * (1.0 - (double)(j > 0 ? j - 1 : 0) / N));
            b = exp(log(lo_u) * (1.0 - (double)(j + 1) / N));
        }
    }
    const double g = 0.5 * (sqrt(5.0) - 1.0);
    double c = b - g * (b - a), d = a + g * (b - a);
    double hc = excess(c, gamma, T), hd = excess(d, gamma, T);
    for (int it = 0; it < 200 && b - a > 1e-15 * b; it++) {
        if (hc < hd) {
            b = d;
            d = c;
            hd = hc;
            c = b - g * (b - a);
            hc = excess(c, gamma, T);
        } else {
            a = c;
            c = d;
            hc = hd;
            d = a + g * (b - a);
            hd = excess(d, gamma, T);
        }
    }
    double u = 0.5 * (a + b);
    if (ratio) *ratio = 1.0 + excess(u, gamma, T);
    return u * sigma_L * sigma_L;
}
