#!/usr/bin/python3
"""mixture_exact.py: ncsn's annealed Langevin sampler (DESIGN.md 3) driven
by the EXACT score of the three-image mixture of tests/test_mixture.py, to
tell sampler errors from network errors.

    mixture_exact.py [--sigma-begin 8.2..] [--sigma-end 0.01] [--levels 10]
                     [--sigmas a,b,...] [--step-lr 2e-5] [--steps-each 100]
                     [--no-clip] [--no-denoise] [--init uniform|normal]
                     [--n 150] [--seeds 0,1,2,...] [--ncsnv2 T]

The data are the test's: prototypes P (8x8: left/right halves, diagonal
waves, top/bottom halves), weights 0.5/0.3/0.2.  Noised with sigma the
density is sum_k w_k N(P_k, sigma^2 I) with score
sum_k r_k(x) (P_k - x) / sigma^2, r = softmax(log w - |x - P|^2 / (2 sigma^2)).

The sampler is the one ncsn implements: for each level i (descending),
a_i = step_lr * sigma_i^2 / sigma_L^2, steps_each updates
x <- x + a_i s(x, sigma_i) + sqrt(2 a_i) z, clamped to [-1, 1] unless
--no-clip, then one denoising step x <- x + sigma_L^2 s(x, sigma_L).

Without --sigmas the levels are geometric from --sigma-begin (default: the
largest distance between prototypes, what `ncsn train` picks from these
data) to --sigma-end.  --ncsnv2 T applies the rules of Song & Ermon 2020
("Improved techniques", techniques 1, 2 and 4) for D = 64 and T steps per
level: sigma_1 = largest pairwise distance, the ratio gamma solving
Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma) = 0.5,
the fewest geometric levels from sigma_1 to --sigma-end whose ratio is at
most gamma, and step_lr = eps making
(1 - eps/sL^2)^(2T) (gamma^2 - 2 eps/(sL^2 - sL^2 (1 - eps/sL^2)^2))
  + 2 eps/(sL^2 - sL^2 (1 - eps/sL^2)^2)
(the variance after T steps over sigma_i^2, for one Gaussian) closest to 1.
That expression exceeds 1 for every eps (its limit for large T is
2/(2 - eps/sL^2)), so "closest to 1" is its minimum over eps.

--mean-blind imitates the one thing the network provably cannot do (every
path from its input passes an instance norm, which removes each channel's
mean): it drives the sampler with the exact score minus its per-image mean,
so nothing pulls the image mean back (the expected score over the data is
zero, so the best constant for that component is zero).

--mean-gauss (with --mean-blind) adds back, on every pixel, the score of a
Gaussian model of the image mean fitted to the data (mean m, variance v of
the per-image means): -(mean(x) - m) / (D v + sigma^2).  That is what a
sampler option could add to a network that cannot see the mean.

For every seed it prints the counts per prototype (nearest prototype), the
share of samples within NEAR (a tenth of the smallest distance between
prototypes) of one, and the chi-square of the counts against the weights
(2 degrees of freedom; the test's limit at 1 % is 9.21); then the pooled
proportions.
"""
import argparse
import math

import numpy as np

H = W = 8
D = H * W
yy, xx = np.mgrid[0:H, 0:W] / 7.0
P = np.stack([np.where(xx < 0.5, 0.8, -0.8),
              0.9 * np.cos(np.pi * (xx + yy)),
              np.where(yy < 0.5, 0.6, -0.2)]).reshape(3, D)
WEIGHTS = np.array([0.5, 0.3, 0.2])
K = len(P)
DIST = np.sqrt(((P[:, None] - P[None]) ** 2).sum(-1))
D_MAX = DIST.max()
D_MIN = DIST[np.triu_indices(K, 1)].min()
NEAR = 0.1 * D_MIN
CHI2_CRIT = 9.21


def score(x, s):
    d2 = ((x[:, None] - P[None]) ** 2).sum(-1)
    lw = np.log(WEIGHTS)[None] - d2 / (2 * s * s)
    lw -= lw.max(1, keepdims=True)
    r = np.exp(lw)
    r /= r.sum(1, keepdims=True)
    return (r @ P - x) / (s * s)


def phi(t):
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def bisect(f, lo, hi, it=200):
    flo = f(lo)
    for _ in range(it):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if (fm > 0) == (flo > 0):
            lo, flo = mid, fm
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ncsnv2_gamma(dim):
    c = math.sqrt(2 * dim)
    return bisect(lambda g: phi(c * (g - 1) + 3 * g) - phi(c * (g - 1) - 3 * g) - 0.5, 1.0001, 10.0)


def ncsnv2_ratio(c, gamma, T):
    """s_T^2 / sigma_i^2 after T steps with a_i / sigma_i^2 = c, from gamma^2."""
    fix = 2 * c / (1 - (1 - c) ** 2)
    return (1 - c) ** (2 * T) * (gamma ** 2 - fix) + fix


def ncsnv2_step(gamma, T, sigma_end):
    cs = np.exp(np.linspace(math.log(1e-6), math.log(0.999), 20001))
    c = cs[np.argmin([ncsnv2_ratio(c, gamma, T) for c in cs])]
    return c * sigma_end ** 2


def sample(sig, step_lr, steps_each, clip, denoise, init, n, seed, blind=False, gauss=False):
    means = P.mean(1)
    m, v = float(WEIGHTS @ means), float(WEIGHTS @ (means - WEIGHTS @ means) ** 2)
    if blind:
        def sc(x, s):
            g = score(x, s)
            g = g - g.mean(1, keepdims=True)
            if gauss:
                g = g - (x.mean(1, keepdims=True) - m) / (D * v + s * s)
            return g
    else:
        sc = score
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, D)) if init == "uniform" else rng.standard_normal((n, D))
    for s in sig:
        a = step_lr * (s / sig[-1]) ** 2
        for _ in range(steps_each):
            x = x + a * sc(x, s) + math.sqrt(2 * a) * rng.standard_normal(x.shape)
            if clip:
                np.clip(x, -1, 1, out=x)
    if denoise:
        x = x + sig[-1] ** 2 * sc(x, sig[-1])
        if clip:
            np.clip(x, -1, 1, out=x)
    return x


def assess(x):
    dist = np.sqrt(((x[:, None] - P[None]) ** 2).sum(-1))
    near, dmin = dist.argmin(1), dist.min(1)
    counts = np.bincount(near, minlength=K)
    exp = WEIGHTS * len(x)
    return counts, float((dmin < NEAR).mean()), float(((counts - exp) ** 2 / exp).sum()), float(np.median(dmin))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sigma-begin", type=float, default=None)
    ap.add_argument("--sigma-end", type=float, default=0.01)
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--sigmas", default=None)
    ap.add_argument("--step-lr", type=float, default=2e-5)
    ap.add_argument("--steps-each", type=int, default=100)
    ap.add_argument("--no-clip", action="store_true")
    ap.add_argument("--no-denoise", action="store_true")
    ap.add_argument("--init", choices=["uniform", "normal"], default="uniform")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--mean-blind", action="store_true")
    ap.add_argument("--mean-gauss", action="store_true")
    ap.add_argument("--ncsnv2", type=int, default=0, metavar="T")
    a = ap.parse_args()

    begin = a.sigma_begin if a.sigma_begin is not None else D_MAX
    if a.ncsnv2:
        gamma = ncsnv2_gamma(D)
        L = int(math.ceil(math.log(begin / a.sigma_end) / math.log(gamma))) + 1
        sig = np.exp(np.linspace(math.log(begin), math.log(a.sigma_end), L))
        gamma = sig[0] / sig[1]
        step_lr, steps_each = ncsnv2_step(gamma, a.ncsnv2, sig[-1]), a.ncsnv2
        print(f"NCSNv2 rules, D={D}: gamma {gamma:.4f}, {L} levels {sig[0]:.3f}..{sig[-1]:.4f}, "
              f"T {steps_each}, step_lr {step_lr:.3g} (a_i/sigma_i^2 = {step_lr / sig[-1] ** 2:.4f}; "
              f"s_T^2/sigma^2 = {ncsnv2_ratio(step_lr / sig[-1] ** 2, gamma, steps_each):.4f})")
    else:
        if a.sigmas:
            sig = np.array([float(v) for v in a.sigmas.split(",")])
        else:
            sig = np.exp(np.linspace(math.log(begin), math.log(a.sigma_end), a.levels))
        step_lr, steps_each = a.step_lr, a.steps_each
        gamma = sig[0] / sig[1]
    print(f"levels {len(sig)}: {sig[0]:.4g} .. {sig[-1]:.4g} (ratio {gamma:.3f}); step_lr {step_lr:.3g}, "
          f"steps_each {steps_each}, clip {not a.no_clip}, denoise {not a.no_denoise}, init {a.init}, "
          f"mean-blind {a.mean_blind}, mean-gauss {a.mean_gauss}; "
          f"prototypes {D_MIN:.2f}..{D_MAX:.2f} apart, NEAR {NEAR:.2f}")
    total, fails = np.zeros(K, int), 0
    seeds = [int(v) for v in a.seeds.split(",")]
    for seed in seeds:
        x = sample(sig, step_lr, steps_each, not a.no_clip, not a.no_denoise, a.init, a.n, seed, a.mean_blind, a.mean_gauss)
        counts, frac, chi2, med = assess(x)
        total += counts
        ok = frac >= 0.9 and chi2 < CHI2_CRIT
        fails += not ok
        print(f"seed {seed}: counts {counts.tolist()} near {frac:.1%} median dist {med:.3f} "
              f"median |image mean| {np.median(np.abs(x.mean(1))):.2f} chi2 {chi2:.2f} "
              f"{'ok' if ok else 'FAIL'}")
    print(f"pooled over {len(seeds)} seeds: proportions {np.round(total / total.sum(), 3).tolist()} "
          f"(weights {WEIGHTS.tolist()}); {fails}/{len(seeds)} seeds fail the test's check (b)")


if __name__ == "__main__":
    main()
