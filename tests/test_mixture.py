#!/usr/bin/env python3
"""test_mixture.py NCSN_BIN WORKDIR: the trainer and sampler learn a
distribution with a known score (issue: "it learns the right distribution").

Data: a mixture of K = 3 fixed 8x8 images (prototypes) with weights
0.5 / 0.3 / 0.2; the prototypes have different means (0, -0.27, 0.2).
Noised with sigma, the data density is sum_k w_k N(mu_k, sigma^2 I), whose
score has the closed form

    s(x) = sum_k r_k(x) (mu_k - x) / sigma^2,
    r_k(x) = softmax_k(log w_k - |x - mu_k|^2 / (2 sigma^2)).

A tiny model (nf 8, 10 levels chosen from the data, 3000 steps of 32 at
Adam 1e-3, then 1000 at 1e-4, EMA 0.999) is trained on 2 ranks with the
recommended settings
for data like these: --plane-head (the network then predicts the clean
image along each channel's mean and scale, which the default network cannot
see: every path passes an instance norm) and --grad-clip 200 (the plane
head's first steps have gradients of norm 2e4 against about 100 later;
unclipped they inflate Adam's second moments and the shape part of the
score stays untrained). It is sampled without the [-1, 1] clamp (the clamp
alone sends 98 % of the samples of the EXACT score to one prototype).
docs/quality.md has the measurements behind each choice. Then:

(a) at each noise level, on 200 points x = mu_k + sigma z (the distribution
    the loss trains on), the relative error |s_net - s|/|s| of the learned
    score must stay below SCORE_TOL = 0.5. The zero score has error 1.0;
    measured: 0.03 at the largest level rising to 0.43 at the smallest
    (the default network: 0.22 to 0.52). The script also prints
    the error of the score of one Gaussian fitted to the data.
(b) 150 samples (annealed Langevin, EMA weights, denoised, no clamp) must
    land near a prototype (distance below NEAR, a tenth of the smallest
    distance between prototypes; 0.68, or 0.085 per pixel) for at least
    90 % of them: measured 97-99 % (the default network: 0-13 %, with or
    without the clamp), and their counts per prototype must pass a
    chi-square test against the weights at the 1 % level (2 degrees of
    freedom: chi2 < 9.21), which an exact sampler fails once in 100 runs.
    Measured for sampler seeds 1 / 2 / 3: chi2 6.4 / 2.7 / 3.2. Without
    the 1000 steps at 1e-4 the seeds gave 12.4 / 4.3 / 6.1: the weights
    at lr 1e-3 still fluctuate. The 0.2-weight prototype remains
    under-weighted (pooled 0.56 / 0.30 / 0.14), docs/quality.md.

Knobs for experiments (environment): NCSN_MIXTURE_STEPS (3000),
NCSN_MIXTURE_LR (1e-3), NCSN_MIXTURE_FINE_STEPS (1000) and
NCSN_MIXTURE_FINE_LR (1e-4) for the second phase, NCSN_MIXTURE_EMA (0.999), NCSN_MIXTURE_LEVELS (10),
NCSN_MIXTURE_RANKS (2; training and sampling do not depend on it),
NCSN_MIXTURE_TRAIN_ARGS ("--plane-head --grad-clip 200"; "" trains the
default network) and NCSN_MIXTURE_SAMPLE_ARGS ("--no-clip"),
NCSN_MIXTURE_MODEL (evaluate this model instead of training one).
"""
import os
import shutil
import subprocess
import sys

try:
    import h5py
    import numpy as np
except ImportError:
    print("SKIP: python3-h5py/numpy missing")
    sys.exit(77)

NCSN, WD = sys.argv[1], sys.argv[2]
os.makedirs(WD, exist_ok=True)
LAUNCH = os.environ.get("MPI_LAUNCH", "mpiexec --oversubscribe -n").split()
STEPS = int(os.environ.get("NCSN_MIXTURE_STEPS", "3000"))
LR = os.environ.get("NCSN_MIXTURE_LR", "1e-3")
EMA = os.environ.get("NCSN_MIXTURE_EMA", "0.999")
FINE_STEPS = int(os.environ.get("NCSN_MIXTURE_FINE_STEPS", "1000"))
FINE_LR = os.environ.get("NCSN_MIXTURE_FINE_LR", "1e-4")
LEVELS = os.environ.get("NCSN_MIXTURE_LEVELS", "10")
RANKS = os.environ.get("NCSN_MIXTURE_RANKS", "2")
MODEL = os.environ.get("NCSN_MIXTURE_MODEL")  # an existing model: skip training
TRAIN_ARGS = os.environ.get("NCSN_MIXTURE_TRAIN_ARGS", "--plane-head --grad-clip 200").split()
SAMPLE_ARGS = os.environ.get("NCSN_MIXTURE_SAMPLE_ARGS", "--no-clip").split()
CHI2_CRIT = 9.21  # chi-square, 2 degrees of freedom, 1 %
SCORE_TOL = 0.5   # every level; the zero score has 1.0; measured worst 0.43

H = W = 8
yy, xx = np.mgrid[0:H, 0:W] / 7.0
P = np.stack([np.where(xx < 0.5, 0.8, -0.8),
              0.9 * np.cos(np.pi * (xx + yy)),
              np.where(yy < 0.5, 0.6, -0.2)]).astype(np.float32)[:, None]
WEIGHTS = np.array([0.5, 0.3, 0.2])
K = len(P)
D_MIN = min(np.linalg.norm(P[i] - P[j]) for i in range(K) for j in range(i + 1, K))
NEAR = 0.1 * D_MIN


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        print(r.stdout[-3000:])
        print("FAIL: command failed:", " ".join(cmd))
        sys.exit(1)
    return r.stdout


def true_score(x, s):
    d2 = ((x[:, None] - P[None]) ** 2).reshape(len(x), K, -1).sum(-1)
    lw = np.log(WEIGHTS)[None] - d2 / (2 * s * s)
    lw -= lw.max(1, keepdims=True)
    r = np.exp(lw)
    r /= r.sum(1, keepdims=True)
    return np.einsum("nk,nkchw->nchw", r, P[None].astype(np.float64) - x[:, None]) / (s * s)


def main():
    rng = np.random.default_rng(0)
    lab = rng.choice(K, size=3000, p=WEIGHTS)
    data = f"{WD}/mixture.h5"
    with h5py.File(data, "w") as f:
        d = f.create_dataset("images", data=P[lab])
        d.attrs["layout"] = "NCHW"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    model = MODEL or f"{WD}/run/model.h5"
    if not MODEL:
        shutil.rmtree(f"{WD}/run", ignore_errors=True)  # a fresh run each time: --resume none refuses old checkpoints
        train = LAUNCH + [RANKS, NCSN, "train", "--data", data, "--run-dir", f"{WD}/run", "--in-channels", "1",
                          "--nf", "8", "--num-classes", LEVELS, "--batch", "32", "--ckpt-every", "0",
                          "--ema", EMA, "--log-every", "500"] + TRAIN_ARGS
        run(train + ["--steps", str(STEPS), "--lr", LR, "--resume", "none"], env=env)
        if FINE_STEPS > 0:  # the same run continued at a lower rate
            run(train + ["--steps", str(STEPS + FINE_STEPS), "--lr", FINE_LR, "--resume", "auto"], env=env)
    with h5py.File(model, "r") as f:
        sig = f["model/sigmas"][()].astype(np.float64)

    # (a) learned score against the closed form, level by level
    xs, labels = [], []
    for i, s in enumerate(sig):
        k = rng.choice(K, size=200, p=WEIGHTS)
        xs.append(P[k] + s * rng.standard_normal((200,) + P.shape[1:]))
        labels.append(np.full(200, i))
    x, labels = np.concatenate(xs).astype(np.float32), np.concatenate(labels)
    with h5py.File(f"{WD}/points.h5", "w") as f:
        f["x"], f["labels"] = x, labels
    run([NCSN, "score", "--model", model, "--input", f"{WD}/points.h5", "--out", f"{WD}/score.h5"])
    with h5py.File(f"{WD}/score.h5", "r") as f:
        got = f["score"][()].astype(np.float64)
    flat = P[lab].reshape(len(lab), -1).astype(np.float64)
    mu, cov = flat.mean(0), np.cov(flat.T)
    ok = True
    for i, s in enumerate(sig):
        sel = labels == i
        xi = x[sel].astype(np.float64)
        ref = true_score(xi, s)
        err = np.linalg.norm(got[sel] - ref) / np.linalg.norm(ref)
        gauss = -np.linalg.solve(cov + s * s * np.eye(len(mu)), (xi.reshape(len(xi), -1) - mu).T).T
        gerr = np.linalg.norm(gauss - ref.reshape(len(xi), -1)) / np.linalg.norm(ref)
        good = err < SCORE_TOL
        ok &= good
        print(f"(a) level {i} sigma {s:8.4f}: relative score error {err:.3f} (limit {SCORE_TOL}; "
              f"one fitted Gaussian: {gerr:.3f}) {'ok' if good else 'FAIL'}")

    # (b) samples near the prototypes, in the right proportions
    run(LAUNCH + [RANKS, NCSN, "sample", "--model", model, "--ema", "--out", f"{WD}/samples.h5", "--n", "150",
                  "--image-size", "8", "--seed", "3", "--denoise"] + SAMPLE_ARGS, env=env)
    with h5py.File(f"{WD}/samples.h5", "r") as f:
        S = f["samples"][()]
    dist = np.sqrt(((S[:, None] - P[None]) ** 2).reshape(len(S), K, -1).sum(-1))
    near, dmin = dist.argmin(1), dist.min(1)
    frac = float((dmin < NEAR).mean())
    counts = np.bincount(near, minlength=K)
    expected = WEIGHTS * len(S)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    good_near, good_chi2 = frac >= 0.9, chi2 < CHI2_CRIT
    ok &= good_near and good_chi2
    print(f"(b) {frac:.1%} of samples within {NEAR:.2f} of a prototype (need 90%) {'ok' if good_near else 'FAIL'}")
    print(f"(b) counts {counts.tolist()} vs expected {expected.tolist()}: chi2 {chi2:.2f} (limit {CHI2_CRIT}) "
          f"{'ok' if good_chi2 else 'FAIL'}")
    print("mixture:", "checks passed" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
