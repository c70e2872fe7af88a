#!/usr/bin/python3
"""test_eval_fd.py: ncsn_eval.py --fd, the feature-space Frechet distance, on
Fashion-MNIST at 16x16.

    tests/test_eval_fd.py [SCRIPTS_DIR] [SCRATCH_DIR]

The classifier trains on the first 5,000 training images; the held-out file
is the first 4,000 test images (R = 2,000 of them, the floor B = 1,000);
the "samples" are 1,000 other test images (6,000-6,999), as they are and
corrupted by noise, shifts and blur of growing strength.  Checks: the
formula (a set against itself, an affine map with a known answer), the
order of the corruptions, one image repeated, refusals (no /labels, other
image shape), and the cache (reused bitwise, a broken one retrained to the
same numbers, an unwritable directory tolerated).

Exit 0 pass, 1 fail, 77 skip (python3-h5py/numpy/torch or the Fashion-MNIST
files missing).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

PY = "/usr/bin/python3"
FM = "/usr/share/datasets/fashion-mnist"
HERE = os.path.dirname(os.path.abspath(__file__))
# keys that say how this run got its classifier, not what it measured
RUN_KEYS = ("fd_cache_hit", "fd_train_seconds", "fd_cache", "samples")

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   - {name}" + (f" ({detail})" if detail else ""))
    else:
        failed += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail else ""))
    return cond


def run(*args, fds=()):
    return subprocess.run([PY, *map(str, args)], capture_output=True, text=True, pass_fds=fds)


def skip_if_missing():
    try:
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e.name} not installed (python3-h5py, python3-numpy, python3-torch)")
        sys.exit(77)
    for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        if not os.path.isfile(f"{FM}/{f}"):
            print(f"SKIP: Fashion-MNIST (dataset-fashion-mnist) not found under {FM}")
            sys.exit(77)


def make_data(scripts, tmp):
    """Dataset files via ncsn_convert.py, and the corrupted sample sets."""
    import h5py
    import numpy as np

    conv = f"{scripts}/ncsn_convert.py"
    train, test = f"{FM}/train-images-idx3-ubyte.gz", f"{FM}/t10k-images-idx3-ubyte.gz"
    for args in (["--format", "idx", train, "--labels", "--size", 16, "--limit", 5000, "--out", f"{tmp}/tr.h5"],
                 ["--format", "idx", train, "--labels", "--size", 16, "--limit", 500, "--out", f"{tmp}/small.h5"],
                 ["--format", "idx", train, "--size", 16, "--limit", 100, "--out", f"{tmp}/nolab.h5"],
                 ["--format", "idx", train, "--labels", "--limit", 100, "--out", f"{tmp}/tr28.h5"],
                 ["--format", "idx", test, "--labels", "--size", 16, "--limit", 4000, "--out", f"{tmp}/held.h5"],
                 ["--format", "idx", test, "--size", 16, "--limit", 7000, "--out", f"{tmp}/t7.h5"]):
        r = run(conv, *args)
        if r.returncode != 0:
            sys.exit(f"FAIL: ncsn_convert.py {args}: {r.stderr}")
    with h5py.File(f"{tmp}/t7.h5") as f:
        real = f["images"][6000:7000][:, None].astype(np.float32) / 127.5 - 1.0
    rng = np.random.default_rng(1)
    sets = {"real": real, "repeat": np.repeat(real[:1], len(real), axis=0)}
    for s in (0.1, 0.3, 0.6):
        sets[f"noise{s}"] = np.clip(real + s * rng.standard_normal(real.shape, dtype=np.float32), -1, 1)
    for k in (1, 2):  # content moves k pixels right and down; background (-1) comes in
        sets[f"shift{k}"] = np.full_like(real, -1.0)
        sets[f"shift{k}"][..., k:, k:] = real[..., :16 - k, :16 - k]
    for r in (1, 2):  # box blur over (2r+1)^2 pixels, edges repeated
        p = np.pad(real, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
        sets[f"blur{r}"] = sum(p[..., i:i + 16, j:j + 16] for i in range(2 * r + 1)
                               for j in range(2 * r + 1)) / (2 * r + 1) ** 2
    # darker than black: what a sampler run without the clamp leaves in the background
    sets["darkbg"] = np.where(real <= -1.0, -1.3, real)
    for name, x in sets.items():
        with h5py.File(f"{tmp}/{name}.h5", "w") as f:
            f["samples"] = x.astype(np.float32)
    return list(sets)


def evaluate(scripts, tmp, name, *extra, train="tr.h5", fds=()):
    """Run ncsn_eval.py --fd on TMP/NAME.h5; (process, JSON dict or None)."""
    out = f"{tmp}/{name}.json"
    if os.path.exists(out):
        os.remove(out)
    r = run(f"{scripts}/ncsn_eval.py", f"{tmp}/{name}.h5", "--data", f"{tmp}/held.h5", "--fd",
            "--train-data", train if train.startswith("/") else f"{tmp}/{train}", "--json", out, *extra,
            fds=fds)
    res = json.load(open(out)) if r.returncode == 0 and os.path.exists(out) else None
    if res is None:
        print(f"    ncsn_eval.py {name}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r, res


def measured(res):
    return {k: v for k, v in res.items() if k not in RUN_KEYS}


def test_cache(scripts, tmp):
    """First run trains and writes the cache; the second loads it and gives the
    same numbers bitwise.  Returns the first run's results."""
    r1, j1 = evaluate(scripts, tmp, "real", "--store")
    if not check("first --fd run exits 0 and writes JSON", j1 is not None):
        return None
    cache = [f for f in os.listdir(tmp) if f.startswith("tr.h5.fdnet-")]
    check("cache named TRAIN.h5.fdnet-<16 hex>.pt",
          len(cache) == 1 and re.fullmatch(r"tr\.h5\.fdnet-[0-9a-f]{16}\.pt", cache[0]), cache)
    check("first run trains", "classifier trained on 4500 images" in r1.stdout and not j1["fd_cache_hit"],
          r1.stdout.splitlines()[0])
    mtime = os.stat(f"{tmp}/{cache[0]}").st_mtime_ns if cache else None
    r2, j2 = evaluate(scripts, tmp, "real")
    check("second run loads the cache and does not train",
          j2 is not None and j2["fd_cache_hit"] and "classifier loaded from" in r2.stdout
          and "trained" not in r2.stdout and os.stat(f"{tmp}/{cache[0]}").st_mtime_ns == mtime)
    check("second run: same numbers bitwise", j2 is not None and measured(j1) == measured(j2))
    keys = {"fd", "fd_real", "fd_score", "fd_score_real", "fd_coverage", "fd_coverage_real",
            "fd_n_classes", "fd_hist", "fd_hist_real", "fd_accuracy", "fd_key", "nn_ratio", "mmd2"}
    check("JSON holds samples and floor numbers", keys <= set(j1), sorted(keys - set(j1)))
    import h5py

    with h5py.File(f"{tmp}/real.h5") as f:
        a = f["samples"].attrs
        check("--store writes eval_fd_* attributes",
              a.get("eval_fd") == j1["fd"] and a.get("eval_fd_coverage") == j1["fd_coverage"]
              and list(a.get("eval_fd_hist", [])) == j1["fd_hist"])
    print(f"    classifier: accuracy {j1['fd_accuracy']:.3f} (validation), {j1['fd_accuracy_ref']:.3f} on R; "
          f"trained in {j1['fd_train_seconds']:.1f} s")
    return j1


def test_broken_cache(scripts, tmp):
    """A cache that does not load is replaced by a new training, which gives
    the same numbers: the training is deterministic."""
    r1, j1 = evaluate(scripts, tmp, "real", train="small.h5")
    if not check("small training file: first run", j1 is not None and not j1["fd_cache_hit"]):
        return
    with open(j1["fd_cache"], "wb") as f:
        f.write(b"not a cache\n")
    r2, j2 = evaluate(scripts, tmp, "real", train="small.h5")
    check("broken cache: warned and trained again",
          j2 is not None and "does not load" in r2.stderr and "training again" in r2.stderr
          and not j2["fd_cache_hit"], r2.stderr.strip())
    check("retraining gives the same numbers bitwise", j2 is not None and measured(j1) == measured(j2))
    r3, j3 = evaluate(scripts, tmp, "real", train="small.h5")
    check("the rewritten cache loads", j3 is not None and j3["fd_cache_hit"])
    # the training file reached through /proc/self/fd/N: its directory takes
    # no new files, for root too
    fd = os.open(f"{tmp}/small.h5", os.O_RDONLY)
    try:
        r4, j4 = evaluate(scripts, tmp, "real", train=f"/proc/self/fd/{fd}", fds=(fd,))
    finally:
        os.close(fd)
    check("unwritable cache directory: exit 0, said, same numbers",
          j4 is not None and "could not write the classifier cache" in r4.stderr and j4["fd_cache"] is None
          and {k: v for k, v in measured(j4).items() if k != "fd_train_data"}
          == {k: v for k, v in measured(j1).items() if k != "fd_train_data"}, r4.stderr.strip())


def test_refusals(scripts, tmp):
    ev = f"{scripts}/ncsn_eval.py"
    for what, args, want in (
            ("--train-data without /labels", ["--data", f"{tmp}/held.h5", "--train-data", f"{tmp}/nolab.h5"],
             [f"{tmp}/nolab.h5", "/labels"]),
            ("--data without /labels (the default training file)", ["--data", f"{tmp}/nolab.h5"],
             [f"{tmp}/nolab.h5", "/labels"]),
            ("classifier of another image shape", ["--data", f"{tmp}/held.h5", "--train-data", f"{tmp}/tr28.h5"],
             ["[1, 16, 16]", "[1, 28, 28]", "tr28.h5"])):
        r = run(ev, f"{tmp}/real.h5", "--fd", *args)
        err = r.stderr.strip()
        check(f"{what}: exit 2, one line naming the fault",
              r.returncode == 2 and len(err.splitlines()) == 1 and all(w in err for w in want),
              f"exit {r.returncode}: {err}")


def test_formula(scripts, tmp, j1):
    """On the classifier's features of the held-out images: a set against itself
    gives 0, also with constant features; y = 2x + 3 gives ||mu + 3||^2 + Tr(S)
    (Tr(S + 4S - 2 (4 S^2)^(1/2)) = Tr(S))."""
    import h5py
    import numpy as np

    sys.path.insert(0, scripts)
    import ncsn_eval
    import ncsn_fdnet

    net, _ = ncsn_fdnet.load_cache(f"{tmp}/tr.h5.fdnet-{j1['fd_key']}.pt", j1["fd_key"], (1, 16, 16))
    with h5py.File(f"{tmp}/held.h5") as f:
        x = f["images"][()][:, None].astype(np.float32) / 127.5 - 1.0
    feat, _ = ncsn_fdnet.forward(net, x)
    scale = np.trace(np.cov(feat, rowvar=False))
    d0 = ncsn_eval.frechet_distance(feat, feat)
    check("a set against itself: FD about 0", abs(d0) < 1e-9 * scale, f"{d0:.3g}, Tr(S) {scale:.4g}")
    # after a ReLU many units are constant zeros: a singular covariance
    dead = np.maximum(feat, 0.0)
    dead[:, ::3] = 0.0
    d0 = ncsn_eval.frechet_distance(dead, dead)
    check("a set against itself, singular covariance: FD about 0", abs(d0) < 1e-9 * scale, f"{d0:.3g}")
    mu = feat.mean(axis=0)
    want = float((mu + 3.0) @ (mu + 3.0) + scale)
    got = ncsn_eval.frechet_distance(feat, 2.0 * feat + 3.0)
    check("y = 2x + 3: FD = ||mu + 3||^2 + Tr(S)", abs(got - want) < 1e-9 * want, f"{got:.10g} vs {want:.10g}")
    half = len(feat) // 2
    a, b = ncsn_eval.frechet_distance(feat[:half], feat[half:]), ncsn_eval.frechet_distance(feat[half:], feat[:half])
    check("symmetric", abs(a - b) < 1e-9 * scale, f"{a:.6g} vs {b:.6g}")


def test_corruptions(scripts, tmp, j1):
    res = {"real": j1}
    for name in ("noise0.1", "noise0.3", "noise0.6", "shift1", "shift2", "blur1", "blur2", "repeat"):
        _, res[name] = evaluate(scripts, tmp, name)
        if res[name] is None:
            return check(f"--fd on {name}", False)
    floor = j1["fd_real"]
    print("    FD to R (floor %.3f): %s" % (floor, ", ".join(f"{k} {v['fd']:.3f}" for k, v in res.items())))
    print("    classifier score (floor %.3f): %s" % (
        j1["fd_score_real"], ", ".join(f"{k} {v['fd_score']:.3f}" for k, v in res.items())))
    fd = {k: v["fd"] for k, v in res.items()}
    check("real images: FD within 1.5x the floor, 10/10 classes, score within 10 % of the floor",
          fd["real"] < 1.5 * floor and j1["fd_coverage"] == 10 and j1["fd_coverage_real"] == 10
          and abs(j1["fd_score"] / j1["fd_score_real"] - 1) < 0.1)
    check("noise: real < 0.1 < 0.3 < 0.6", fd["real"] < fd["noise0.1"] < fd["noise0.3"] < fd["noise0.6"])
    check("noise 0.1 above the real images' FD by 20 %", fd["noise0.1"] > 1.2 * fd["real"])
    check("noise 0.3 and 0.6, shifts, blurs: FD above 3x the floor",
          min(fd[k] for k in ("noise0.3", "noise0.6", "shift1", "shift2", "blur1", "blur2")) > 3 * floor)
    check("shift 1 px < 2 px", fd["shift1"] < fd["shift2"])
    check("blur 3x3 < 5x5", fd["blur1"] < fd["blur2"])
    check("noise 0.6: classifier score below the floor's", res["noise0.6"]["fd_score"] < j1["fd_score_real"])
    rep = res["repeat"]
    check("one image repeated: classes>=5% 1/10, classifier score about 1",
          rep["fd_coverage"] == 1 and abs(rep["fd_score"] - 1.0) < 1e-3 and max(rep["fd_hist"]) == 1000,
          f"{rep['fd_coverage']}/10, score {rep['fd_score']:.6f}")
    check("one image repeated: FD far above the floor", fd["repeat"] > 30 * floor)


def test_out_of_range(scripts, tmp, j1):
    """Values outside [-1, 1] are clipped before scoring (as a picture shows
    them), and counted; --raw scores them as stored."""
    import h5py
    import numpy as np

    _, clipped = evaluate(scripts, tmp, "darkbg")
    _, raw = evaluate(scripts, tmp, "darkbg", "--raw")
    if not check("--fd on darkbg, with and without --raw", clipped is not None and raw is not None):
        return
    share = float(np.mean(h5py.File(f"{tmp}/darkbg.h5")["samples"][()] < -1.0))
    check("background at -1.3: out_of_range_share counts it, min is the file's",
          abs(clipped["out_of_range_share"] - share) < 1e-12 and clipped["min"] < -1.29 and not clipped["raw"],
          f"{clipped['out_of_range_share']:.3f}")
    check("background at -1.3, clipped: scored as the real images (bitwise the same FD)",
          clipped["fd"] == j1["fd"], f"{clipped['fd']:.4f} vs {j1['fd']:.4f}")
    check("background at -1.3, --raw: FD above 10x the clipped one", raw["fd"] > 10 * clipped["fd"] and raw["raw"],
          f"{raw['fd']:.2f} vs {clipped['fd']:.2f}")


def main():
    scripts = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else f"{HERE}/../scripts")
    skip_if_missing()
    if len(sys.argv) > 2:
        tmp = sys.argv[2]
        os.makedirs(tmp, exist_ok=True)
        for f in os.listdir(tmp):  # a fresh start: old caches would skip the training checks
            os.remove(os.path.join(tmp, f))
        ctx = None
    else:
        ctx = tempfile.TemporaryDirectory()
        tmp = ctx.name
    make_data(scripts, tmp)
    test_refusals(scripts, tmp)
    j1 = test_cache(scripts, tmp)
    if j1 is not None:
        test_formula(scripts, tmp, j1)
        test_corruptions(scripts, tmp, j1)
        test_out_of_range(scripts, tmp, j1)
    test_broken_cache(scripts, tmp)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
