#!/usr/bin/python3
"""ncsn_eval.py: score a samples file against held-out data.

    ncsn_eval.py SAMPLES.h5 --data HELDOUT.h5 [--dataset images] [--n-ref 2000]
                 [--seed 0] [--store] [--json PATH] [--fd [--train-data TRAIN.h5]]

SAMPLES.h5 holds /samples float32 [N, C, H, W] in [-1, 1] (DESIGN.md 4).
HELDOUT.h5 is a dataset file (DESIGN.md 4): uint8 [M, H, W] or [M, H, W, C],
mapped by x/127.5 - 1 and HWC -> CHW, or float32 [M, C, H, W] with
layout = "NCHW"; optionally /labels [M].  Use images the model was not
trained on (e.g. the test split).

The held-out images are shuffled with a fixed seed and split into two
disjoint sets:
  R  the reference set, n_ref images (--n-ref, default 2000);
  B  a real baseline set of min(N, M - n_ref) images, made as large as the
     samples where possible (if M < n_ref + 2, R gets M - min(N, M/2)).
B is a set of real images that plays the part of the samples, so every
measure below is reported for the samples and for B: a good model is as
close to B's numbers as possible.  The distances of (a) to (c) are L2 in
pixel space, on images scaled to [-1, 1] and flattened (D = C*H*W values).

Measures
  (a) Nearest-neighbour distance ratio.
        d(S) = mean over s in S of min over r in R of ||s - r||
        nn_ratio = d(samples) / d(B)
      About 1: the samples lie as close to the data as real data does.
      Much larger: the samples are off the data (noise, artefacts).  Clearly
      below 1 is suspicious too: blurry averages or copies of R.
  (b) Kernel MMD^2 with a Gaussian kernel k(x, y) = exp(-||x - y||^2 / (2 h^2)).
      The bandwidth h is the median pairwise distance within R (median
      heuristic on the reference data only, its first 2000 images), so for a given data file, n_ref
      and seed it is fixed and numbers are comparable between models.
      MMD^2 is the unbiased U-statistic
        mean_{i!=j} k(s_i, s_j) + mean_{i!=j} k(r_i, r_j) - 2 mean_{i,j} k(s_i, r_j),
      reported for the samples against R and, as the baseline, for B against R
      (whose expectation is 0; it is slightly negative or positive by chance).
  (c) With /labels in the data file: every image of S (and of B) is assigned
      the label of its nearest neighbour in R.  class_hist counts the samples
      per class; the expected share of class k is its frequency p_k in R;
      coverage = fraction of the classes of R with count_k / N >= p_k / 2.
      A mode-collapsed model scores low coverage even with a good nn_ratio.
  (d) With --fd: the same sets in the 64 features of a small CNN classifier
      (scripts/ncsn_fdnet.py) trained on the labelled file TRAIN.h5
      (--train-data; default the --data file itself, R included, which the
      output then notes: pass the model's training file to keep R unseen).
      It trains once, in seconds, and is cached beside TRAIN.h5 as
      TRAIN.h5.fdnet-KEY.pt (KEY from the file's sha256 and the recipe); a
      cache that does not load is trained again, an unwritable directory
      only costs the cache.  Its accuracy on a held-out tenth of TRAIN.h5
      (and on R when TRAIN.h5 is another file) is printed.
        fd        Frechet distance of the features of S to those of R:
                  ||mu_S - mu_R||^2 + Tr(S_S + S_R - 2 (S_S S_R)^(1/2)),
                  the FID formula in this classifier's features (not
                  comparable with published FIDs).  fd_real, the same for B,
                  is the floor: FD grows as the sample count shrinks, so
                  compare at equal N, against the floor.
        fd_score  exp(mean KL(p(y|x) || p(y))), the Inception score's
                  formula with this classifier: 1 for one repeated image,
                  at most K for confident predictions spread over K classes.
        fd_coverage  classes with at least 5 % of the classifier's argmax
                  ("classes>=5%: 8/10"), and the histogram fd_hist.
      Image shape of the samples and TRAIN.h5 must agree; TRAIN.h5 needs
      /labels.  Needs PyTorch; without --fd the script does not import it.
  Also the mean and standard deviation of the pixel values of the samples
  and of all held-out images.

The samples are scored as a picture of them shows them: values outside
[-1, 1] (a sampler run with --no-clip leaves them) are clipped to it first,
and out_of_range_share reports how many there were; min and max are those of
the file.  The classifier has never seen a value below -1, and it reacts to
one strongly: real images whose black background is moved to -1.3 score a
distance of about 100 (docs/quality.md).  --raw scores the values as stored.

With --store the numbers are written as attributes eval_* on /samples (the
file is opened r+), eval_fd_* for (d).  --json PATH writes all results, for
the samples and for B (keys ending in _real), as one JSON object: a number
stored as eval_X appears as X, next to the file names and the classifier's
provenance (fd_key, fd_cache, fd_cache_hit, fd_train_seconds, fd_recipe).
Non-finite numbers are written as null.  Results are
deterministic: the split uses numpy's default_rng(--seed, default 0), the
classifier fixed seeds, deterministic kernels and one thread.  Bad input
exits with status 2 and a line naming the file and dataset.
"""

import argparse
import json
import os
import sys

import numpy as np

PROG = "ncsn_eval.py"
BLOCK = 1024  # rows per block of a distance matrix
MEDIAN_MAX = 2000  # images of R used for the median heuristic
FD_SHARE = 0.05  # a class counts as covered by the classifier's argmax from this share on


def fail(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def open_h5(path, mode="r"):
    import h5py

    if not os.path.isfile(path):
        fail(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as e:
        hint = "; it may be open for writing (HDF5_USE_FILE_LOCKING)" if "lock" in str(e).lower() else ""
        fail(f"{path}: cannot open as HDF5 ({e}{hint})")


def read_str_attr(obj, name):
    v = obj.attrs.get(name)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == () and isinstance(v.item(), bytes):
        return v.item().decode("utf-8", "replace")
    return None if v is None else str(v)


# ---------------------------------------------------------------- inputs

def load_samples(path):
    """/samples float32 [N, C, H, W] -> float32 array, checked."""
    with open_h5(path) as f:
        if "samples" not in f:
            fail(f"{path}: no dataset /samples (expected float32 [N,C,H,W] in [-1,1])")
        ds = f["samples"]
        if not hasattr(ds, "dtype") or ds.dtype.kind != "f" or ds.ndim != 4:
            fail(f"{path}: dataset /samples is {getattr(ds, 'dtype', 'a group')} "
                 f"{list(getattr(ds, 'shape', []))}, expected float32 [N,C,H,W] in [-1,1]")
        x = ds[()].astype(np.float32)
    if x.shape[0] < 2:
        fail(f"{path}: dataset /samples has {x.shape[0]} images, need at least 2")
    if not np.all(np.isfinite(x)):
        fail(f"{path}: dataset /samples has NaN or Inf values")
    return x


def load_data(path, name):
    """Dataset file -> (uint8 or float32 array, layout, labels or None)."""
    with open_h5(path) as f:
        if name not in f or not hasattr(f[name], "dtype"):
            fail(f"{path}: no dataset {name} (expected uint8 [N,H,W] or [N,H,W,C], "
                 f"or float32 [N,C,H,W] with layout=\"NCHW\")")
        ds = f[name]
        layout = read_str_attr(ds, "layout")
        if ds.dtype == np.uint8 and ds.ndim in (3, 4):
            kind = "HW" if ds.ndim == 3 else "HWC"
        elif ds.dtype == np.float32 and ds.ndim == 4 and layout == "NCHW":
            kind = "NCHW"
        else:
            fail(f"{path}: dataset {name} is {ds.dtype} {list(ds.shape)}"
                 f"{'' if layout is None else ' layout=' + layout}, expected uint8 [N,H,W] or "
                 f"[N,H,W,C], or float32 [N,C,H,W] with layout=\"NCHW\"")
        data = ds[()]
        labels = None
        if "labels" in f:
            lab = f["labels"]
            if not hasattr(lab, "dtype") or lab.dtype.kind not in "iu" or lab.ndim != 1 \
                    or lab.shape[0] != data.shape[0]:
                fail(f"{path}: dataset /labels is {getattr(lab, 'dtype', 'a group')} "
                     f"{list(getattr(lab, 'shape', []))}, expected integers [{data.shape[0]}]")
            labels = lab[()].astype(np.int64)
            if labels.min() < 0:
                fail(f"{path}: dataset /labels has negative values")
    if kind == "NCHW" and not np.all(np.isfinite(data)):
        fail(f"{path}: dataset {name} has NaN or Inf values")
    return data, kind, labels


def chw_shape(data, kind):
    if kind == "HW":
        return (1,) + data.shape[1:3]
    if kind == "HWC":
        return (data.shape[3],) + data.shape[1:3]
    return data.shape[1:4]


def to_float(data, kind, idx):
    """Selected images -> float32 [n, C*H*W] in [-1, 1], CHW order."""
    x = data[idx]
    if kind == "NCHW":
        return np.ascontiguousarray(x, dtype=np.float32).reshape(len(idx), -1)
    x = x.astype(np.float32) / 127.5 - 1.0
    if kind == "HWC":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x).reshape(len(idx), -1)


def pixel_stats(data, kind):
    """Mean and std of all pixel values of the dataset mapped to [-1, 1]."""
    s = s2 = 0.0
    n = 0
    for i in range(0, data.shape[0], 4096):
        x = np.asarray(data[i:i + 4096], dtype=np.float64)
        if kind != "NCHW":
            x = x / 127.5 - 1.0
        s += x.sum()
        s2 += np.square(x).sum()
        n += x.size
    mean = s / n
    return mean, float(np.sqrt(max(s2 / n - mean * mean, 0.0)))


# ---------------------------------------------------------------- distances

def sqdist(a, b, a2, b2):
    """Squared L2 distances [len(a), len(b)] via ||a||^2 + ||b||^2 - 2 a.b."""
    d = a2[:, None] + b2[None, :] - 2.0 * (a @ b.T).astype(np.float64)
    return np.maximum(d, 0.0)


def nearest(q, r):
    """For each row of q: distance to and index of its nearest row of r."""
    q2 = np.einsum("ij,ij->i", q, q, dtype=np.float64)
    r2 = np.einsum("ij,ij->i", r, r, dtype=np.float64)
    dist = np.empty(len(q))
    idx = np.empty(len(q), dtype=np.int64)
    for i in range(0, len(q), BLOCK):
        d = sqdist(q[i:i + BLOCK], r, q2[i:i + BLOCK], r2)
        j = d.argmin(axis=1)
        idx[i:i + BLOCK] = j
        dist[i:i + BLOCK] = np.sqrt(d[np.arange(len(j)), j])
    return dist, idx


def kernel_mean(a, b, h2, same):
    """Mean of exp(-||a_i - b_j||^2 / (2 h2)) over all pairs, or i != j when same."""
    a2 = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    b2 = a2 if same else np.einsum("ij,ij->i", b, b, dtype=np.float64)
    total = 0.0
    for i in range(0, len(a), BLOCK):
        k = np.exp(-sqdist(a[i:i + BLOCK], b, a2[i:i + BLOCK], b2) / (2.0 * h2))
        if same:
            rows = np.arange(k.shape[0])
            k[rows, rows + i] = 0.0
        total += k.sum()
    pairs = len(a) * (len(a) - 1) if same else len(a) * len(b)
    return total / pairs


def median_sqdist(r):
    """Median of the squared pairwise distances within r (i < j); the first
    MEDIAN_MAX rows of r suffice and keep the pair list small."""
    r = r[:MEDIAN_MAX]
    r2 = np.einsum("ij,ij->i", r, r, dtype=np.float64)
    parts = []
    for i in range(0, len(r), BLOCK):
        d = sqdist(r[i:i + BLOCK], r, r2[i:i + BLOCK], r2)
        rows, cols = np.triu_indices(d.shape[0], k=1, m=d.shape[1] - i)
        parts.append(d[rows, cols + i])
    return float(np.median(np.concatenate(parts)))


def mmd2(x, r, h2, k_rr):
    return kernel_mean(x, x, h2, True) + k_rr - 2.0 * kernel_mean(x, r, h2, False)


def coverage(nn_labels, classes, p_ref):
    counts = np.array([(nn_labels == c).sum() for c in classes], dtype=np.int64)
    share = counts / len(nn_labels)
    return float(np.mean(share >= 0.5 * p_ref)), counts


# ---------------------------------------------------------------- feature space (--fd)

def psd_sqrt(s):
    """Symmetric square root of a covariance matrix; eigenvalues that round
    below zero are taken as zero."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(f1, f2):
    """Frechet distance between Gaussians fitted to two feature sets [n, D]:
        ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)),
    in float64.  S1 S2 is not symmetric, but it is similar to the symmetric
    positive semi-definite sqrt(S1) S2 sqrt(S1) = A A^T with
    A = sqrt(S1) sqrt(S2), so Tr((S1 S2)^(1/2)) is the sum of the singular
    values of A.  Taking them from an SVD of A, rather than as square roots
    of the eigenvalues of A A^T, keeps the small ones accurate: forming A A^T
    squares the condition number, and on 64 classifier features that left
    FD(X, X) at -2e-5 instead of 1e-12."""
    f1 = np.asarray(f1, dtype=np.float64)
    f2 = np.asarray(f2, dtype=np.float64)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    trace_root = np.linalg.svd(psd_sqrt(s1) @ psd_sqrt(s2), compute_uv=False).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * trace_root)


def classifier_score(logp):
    """exp(mean over x of KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over
    the set (the Inception score's formula); logp [n, K] float64.  1 when
    every image gets the same class distribution, K at most (confident and
    evenly spread over the K classes)."""
    p = np.exp(logp)
    log_py = np.log(p.mean(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p > 0.0, p * (logp - log_py), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def argmax_coverage(logp, n_classes):
    """Histogram of the classifier's argmax over classes 0..K-1 and the number
    of classes that get at least FD_SHARE of the images."""
    hist = np.bincount(logp.argmax(axis=1), minlength=n_classes)
    return int((hist >= FD_SHARE * len(logp)).sum()), hist


def fd_classifier(a, shape):
    """The feature classifier for --fd: trained on --train-data (default the
    --data file), or loaded from its cache.  Refuses files without /labels
    and images of another shape than the samples."""
    path = a.train_data or a.data
    data, kind, labels = load_data(path, a.dataset)
    if labels is None:
        fail(f"{path}: no dataset /labels; --fd trains its classifier on labelled images "
             f"(make the file with ncsn_convert.py --labels, or give --train-data a labelled file)")
    if tuple(chw_shape(data, kind)) != tuple(shape):
        fail(f"{a.samples}: /samples images are [C,H,W] = {list(shape)}, but the --fd classifier "
             f"takes [C,H,W] = {list(chw_shape(data, kind))} (the images of {path}:{a.dataset})")
    if len(labels) < 20:
        fail(f"{path}: dataset {a.dataset} has {len(labels)} images, --fd needs at least 20 "
             f"to train its classifier")
    try:
        import ncsn_fdnet
    except ImportError as e:
        fail(f"--fd needs PyTorch (Debian package python3-torch): {e}")

    def images():  # all images of the file, float32 [M, C, H, W]; only needed to train
        return to_float(data, kind, np.arange(len(labels))).reshape((-1,) + tuple(shape))

    net, info = ncsn_fdnet.load_or_train(path, a.dataset, images, labels, shape, PROG)
    info["path"] = path
    info["separate"] = a.train_data is not None and info["sha256"] != ncsn_fdnet.file_sha256(a.data)
    info["recipe"] = ncsn_fdnet.RECIPE
    if info["cache_hit"]:
        print(f"{PROG}: classifier loaded from {info['cache']}")
    else:
        print(f"{PROG}: classifier trained on {info['n_train']} images of {path}:/{a.dataset.strip('/')} "
              f"in {info['train_seconds']:.1f} s" +
              (f", saved to {info['cache']}" if info["cache"] else ""))
    return net, info, ncsn_fdnet.forward


def evaluate_fd(res, samples, data, kind, labels, ref_idx, base_idx, clf):
    """Add the fd_* numbers for the samples and for B (the floor) to res."""
    net, info, forward = clf
    K = info["n_classes"]
    f_r, logp_r = forward(net, to_float(data, kind, ref_idx).reshape((-1,) + samples.shape[1:]))
    f_b, logp_b = forward(net, to_float(data, kind, base_idx).reshape((-1,) + samples.shape[1:]))
    f_s, logp_s = forward(net, samples)
    res["fd"], res["fd_real"] = frechet_distance(f_s, f_r), frechet_distance(f_b, f_r)
    res["fd_score"], res["fd_score_real"] = classifier_score(logp_s), classifier_score(logp_b)
    res["fd_coverage"], res["fd_hist"] = argmax_coverage(logp_s, K)
    res["fd_coverage_real"], res["fd_hist_real"] = argmax_coverage(logp_b, K)
    res["fd_n_classes"], res["fd_dim"] = K, f_s.shape[1]
    res["fd_accuracy"], res["fd_n_val"] = info["accuracy"], info["n_val"]
    res["fd_accuracy_ref"] = None
    if info["separate"] and labels is not None:
        res["fd_accuracy_ref"] = float(np.mean(logp_r.argmax(axis=1) == labels[ref_idx]))
    res["fd_train_data"], res["fd_train_sha256"] = info["path"], info["sha256"]
    res["fd_separate"] = info["separate"]
    res["fd_key"], res["fd_cache"], res["fd_cache_hit"] = info["key"], info["cache"], info["cache_hit"]
    res["fd_train_seconds"], res["fd_recipe"] = info["train_seconds"], info["recipe"]


# ---------------------------------------------------------------- main

def split(M, N, n_ref, seed):
    """Indices of the reference set R and the real baseline B among M held-out
    images, for N samples; None when there are too few images."""
    n_b = min(N, M - n_ref)
    if n_b < 2:  # not enough held-out images for both sets: split them
        n_b = min(N, M // 2)
        n_ref = M - n_b
    if n_b < 2 or n_ref < 2:
        return None
    perm = np.random.default_rng(seed).permutation(M)
    return np.sort(perm[:n_ref]), np.sort(perm[n_ref:n_ref + n_b])


def evaluate(samples, data, kind, labels, ref_idx, base_idx, seed):
    N = samples.shape[0]
    n_ref, n_b = len(ref_idx), len(base_idx)
    R = to_float(data, kind, ref_idx)
    B = to_float(data, kind, base_idx)
    S = samples.reshape(N, -1)

    d_s, nn_s = nearest(S, R)
    d_b, nn_b = nearest(B, R)
    h2 = median_sqdist(R)
    if h2 <= 0.0:
        h2 = 1.0  # all reference images equal; any bandwidth gives the same ordering
    k_rr = kernel_mean(R, R, h2, True)

    res = {
        "n_samples": N, "n_ref": n_ref, "n_real": n_b, "seed": seed,
        "nn_dist": float(d_s.mean()), "nn_dist_real": float(d_b.mean()),
        "mmd_bandwidth": float(np.sqrt(h2)),
        "mmd2": float(mmd2(S, R, h2, k_rr)), "mmd2_real": float(mmd2(B, R, h2, k_rr)),
        "mean": float(samples.mean(dtype=np.float64)), "std": float(samples.std(dtype=np.float64)),
    }
    res["nn_ratio"] = res["nn_dist"] / res["nn_dist_real"] if res["nn_dist_real"] > 0 else float("inf")
    res["data_mean"], res["data_std"] = pixel_stats(data, kind)
    if labels is not None:
        ref_labels = labels[ref_idx]
        classes, counts_ref = np.unique(ref_labels, return_counts=True)
        p_ref = counts_ref / n_ref
        res["classes"] = classes
        res["coverage"], res["class_hist"] = coverage(ref_labels[nn_s], classes, p_ref)
        res["coverage_real"], res["class_hist_real"] = coverage(ref_labels[nn_b], classes, p_ref)
        res["class_share_ref"] = p_ref
    return res


def print_table(res, samples_path, data_path, name):
    print(f"{PROG}: {samples_path} ({res['n_samples']} samples) vs {data_path}:/{name.strip('/')}")
    print(f"  reference set R: {res['n_ref']} images; real baseline B: {res['n_real']} images; "
          f"seed {res['seed']}")
    rows = [
        ("measure", "samples", "real (B)"),
        ("NN distance to R (L2)", f"{res['nn_dist']:.4f}", f"{res['nn_dist_real']:.4f}"),
        ("NN distance ratio", f"{res['nn_ratio']:.4f}", "1"),
        ("MMD^2 vs R", f"{res['mmd2']:.6f}", f"{res['mmd2_real']:.6f}"),
        ("pixel mean", f"{res['mean']:.4f}", f"{res['data_mean']:.4f} (all)"),
        ("pixel std", f"{res['std']:.4f}", f"{res['data_std']:.4f} (all)"),
    ]
    if "coverage" in res:
        rows.append(("class coverage", f"{res['coverage']:.3f}", f"{res['coverage_real']:.3f}"))
    if "fd" in res:
        K = res["fd_n_classes"]
        rows += [
            ("Frechet distance to R (features)", f"{res['fd']:.4f}", f"{res['fd_real']:.4f}"),
            ("classifier score", f"{res['fd_score']:.4f}", f"{res['fd_score_real']:.4f}"),
            (f"classes>={FD_SHARE:.0%} (classifier)", f"{res['fd_coverage']}/{K}",
             f"{res['fd_coverage_real']}/{K}"),
        ]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print(f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}")
        if i == 0:
            print("  " + "-" * (w[0] + w[1] + w[2] + 4))
    print(f"  MMD Gaussian bandwidth h = {res['mmd_bandwidth']:.4f} (median distance within R)")
    if "coverage" in res:
        n, nb = res["n_samples"], res["n_real"]
        print("  class  share(R)  samples(NN)  real(NN)")
        for c, p, k, kb in zip(res["classes"], res["class_share_ref"], res["class_hist"],
                               res["class_hist_real"]):
            print(f"  {c:5d}  {p:8.3f}  {k:6d} {k / n:5.3f}  {kb:4d} {kb / nb:5.3f}")
    if "fd" in res:
        print_fd(res)
    if res["out_of_range"]:
        how = "scored as stored (--raw)" if res["raw"] else "clipped to [-1, 1] before scoring"
        print(f"  note: samples range over [{res['min']:.4g}, {res['max']:.4g}]; "
              f"{res['out_of_range_share']:.1%} of the values lie outside [-1, 1], {how}")


def print_fd(res):
    """The classifier's accuracy, its class histograms, and a note when it has
    seen the reference set."""
    ref = "" if res["fd_accuracy_ref"] is None else f", {res['fd_accuracy_ref']:.3f} on R"
    print(f"  classifier: {res['fd_n_classes']} classes, {res['fd_dim']} features; accuracy "
          f"{res['fd_accuracy']:.3f} on {res['fd_n_val']} held-out images of {res['fd_train_data']}{ref}")
    n, nb = res["n_samples"], res["n_real"]
    print("  class  samples(argmax)  real(argmax)")
    for c, (k, kb) in enumerate(zip(res["fd_hist"], res["fd_hist_real"])):
        print(f"  {c:5d}  {k:8d} {k / n:6.3f}  {kb:5d} {kb / nb:6.3f}")
    if not res["fd_separate"]:
        print("  note: the classifier was trained on the held-out file, R included; give "
              "--train-data (e.g. the model's training file) to keep R unseen")


def store(path, res, data_path, name):
    keys = ["nn_ratio", "nn_dist", "nn_dist_real", "mmd2", "mmd2_real", "mmd_bandwidth",
            "mean", "std", "data_mean", "data_std", "min", "max", "out_of_range_share"]
    with open_h5(path, "r+") as f:
        a = f["samples"].attrs
        for k in keys:
            a[f"eval_{k}"] = np.float64(res[k])
        for k in ("n_ref", "n_real", "seed", "raw"):
            a[f"eval_{k}"] = np.int64(res[k])
        a["eval_data"] = np.bytes_(f"{os.path.basename(data_path)}:/{name.strip('/')}".encode())
        if "coverage" in res:
            a["eval_coverage"] = np.float64(res["coverage"])
            a["eval_coverage_real"] = np.float64(res["coverage_real"])
            a["eval_classes"] = np.asarray(res["classes"], dtype=np.int64)
            a["eval_class_hist"] = np.asarray(res["class_hist"], dtype=np.int64)
        else:
            for k in ("eval_coverage", "eval_coverage_real", "eval_classes", "eval_class_hist"):
                if k in a:
                    del a[k]
        for k in [k for k in a if k.startswith("eval_fd")]:
            del a[k]  # numbers of an earlier --fd run would not match these
        if "fd" in res:
            store_fd(a, res)


def store_fd(a, res):
    for k in ("fd", "fd_real", "fd_score", "fd_score_real", "fd_accuracy"):
        a[f"eval_{k}"] = np.float64(res[k])
    if res["fd_accuracy_ref"] is not None:
        a["eval_fd_accuracy_ref"] = np.float64(res["fd_accuracy_ref"])
    for k in ("fd_coverage", "fd_coverage_real", "fd_n_classes", "fd_dim", "fd_n_val"):
        a[f"eval_{k}"] = np.int64(res[k])
    a["eval_fd_hist"] = np.asarray(res["fd_hist"], dtype=np.int64)
    a["eval_fd_hist_real"] = np.asarray(res["fd_hist_real"], dtype=np.int64)
    a["eval_fd_train_data"] = np.bytes_(os.path.basename(res["fd_train_data"]).encode())
    a["eval_fd_key"] = np.bytes_(res["fd_key"].encode())


def plain(v):
    """A result value as JSON: arrays as lists, numpy scalars as Python's,
    non-finite numbers as null."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (np.ndarray, list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    return v


def write_json(path, res, a):
    """All numbers as one JSON object, written under a temporary name and
    renamed so that a reader never sees half a file."""
    out = {"samples": a.samples, "data": a.data, "dataset": a.dataset}
    out.update(plain(res))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"{path}: cannot write the JSON file ({e.strerror or e})")


def main(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0].split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring (head -90 of this file) for the measures.")
    p.add_argument("samples", metavar="SAMPLES.h5", help="file with /samples float32 [N,C,H,W]")
    p.add_argument("--data", required=True, metavar="HELDOUT.h5", help="held-out dataset file")
    p.add_argument("--dataset", default="images", help="image dataset name (default: images)")
    p.add_argument("--n-ref", type=int, default=2000, help="reference set size (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    p.add_argument("--store", action="store_true", help="write eval_* attributes on /samples")
    p.add_argument("--fd", action="store_true",
                   help="add the Frechet distance, classifier score and coverage in the features of "
                        "a small CNN classifier (needs PyTorch)")
    p.add_argument("--train-data", metavar="TRAIN.h5",
                   help="labelled dataset file the --fd classifier trains on (default: the --data "
                        "file); its cache TRAIN.h5.fdnet-KEY.pt is kept beside it")
    p.add_argument("--json", metavar="PATH", help="also write all numbers as one JSON object to PATH")
    p.add_argument("--raw", action="store_true",
                   help="score the samples as stored; by default values outside [-1, 1] are clipped "
                        "to it first, as any picture of them is")
    a = p.parse_args(argv)
    if a.n_ref < 2:
        p.error(f"--n-ref must be at least 2, got {a.n_ref}")
    if a.seed < 0:
        p.error(f"--seed must be non-negative, got {a.seed}")
    if a.train_data and not a.fd:
        p.error("--train-data is the --fd classifier's training file; give --fd too")

    samples = load_samples(a.samples)
    data, kind, labels = load_data(a.data, a.dataset)
    if tuple(samples.shape[1:]) != tuple(chw_shape(data, kind)):
        fail(f"{a.samples}: /samples images are [C,H,W] = {list(samples.shape[1:])}, but "
             f"{a.data}:{a.dataset} holds {list(chw_shape(data, kind))}")
    sets = split(data.shape[0], samples.shape[0], a.n_ref, a.seed)
    if sets is None:
        fail(f"{a.data}: dataset {a.dataset} has {data.shape[0]} images, need at least 4 "
             f"(two disjoint sets of at least 2)")
    clf = fd_classifier(a, samples.shape[1:]) if a.fd else None
    outside = (samples < -1.0) | (samples > 1.0)
    rng = {"min": float(samples.min()), "max": float(samples.max()),
           "out_of_range_share": float(outside.mean()), "out_of_range": bool(outside.any()), "raw": a.raw}
    if not a.raw:
        samples = np.clip(samples, -1.0, 1.0)
    res = evaluate(samples, data, kind, labels, *sets, a.seed)
    res.update(rng)
    if clf is not None:
        evaluate_fd(res, samples, data, kind, labels, *sets, clf)
    print_table(res, a.samples, a.data, a.dataset)
    if a.store:
        store(a.samples, res, a.data, a.dataset)
        print(f"{PROG}: stored eval_* attributes on {a.samples}:/samples")
    if a.json:
        write_json(a.json, res, a)
        print(f"{PROG}: wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
