#!/bin/bash
# test_scripts.sh: end-to-end test of the Python helpers in scripts/
# (ncsn_convert.py, ncsn_eval.py without --fd, plot_loss.py, mixture_exact.py) on real
# Fashion-MNIST images and on small synthetic inputs made here.
#
#   tests/test_scripts.sh [SCRIPTS_DIR] [SCRATCH_DIR]
#
# Exit 0 pass, 1 fail, 77 skip (python3-h5py/numpy/matplotlib or the
# Fashion-MNIST files missing).
set -u

here=$(cd "$(dirname "$0")" && pwd)
scripts=${1:-$here/../scripts}
scripts=$(cd "$scripts" && pwd) || { echo "FAIL: no scripts dir $1"; exit 1; }
if [ -n "${2:-}" ]; then
    tmp=$2
    mkdir -p "$tmp" || exit 1
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
fi
py=/usr/bin/python3
fm=/usr/share/datasets/fashion-mnist

if ! $py -c 'import h5py, numpy' 2>/dev/null; then
    echo "SKIP: python3-h5py / python3-numpy not installed"; exit 77
fi
if ! $py -c 'import matplotlib' 2>/dev/null; then
    echo "SKIP: python3-matplotlib not installed"; exit 77
fi
if [ ! -f "$fm/train-images-idx3-ubyte.gz" ] || [ ! -f "$fm/t10k-images-idx3-ubyte.gz" ]; then
    echo "SKIP: Fashion-MNIST (dataset-fashion-mnist) not found under $fm"; exit 77
fi

passed=0
failed=0
ok()   { echo "ok   - $1"; passed=$((passed + 1)); }
bad()  { echo "FAIL - $1"; failed=$((failed + 1)); }
# check NAME CMD...: run CMD, pass when it exits 0
check() { local name=$1; shift; if "$@" >"$tmp/last.log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$tmp/last.log"; fi; }
# expect_fail NAME OUT CMD...: CMD must exit 2, print one error line, and leave neither OUT nor OUT.tmp
expect_fail() {
    local name=$1 out=$2; shift 2
    "$@" >"$tmp/last.out" 2>"$tmp/last.err"
    local rc=$?
    if [ $rc -ne 2 ]; then bad "$name: exit $rc, expected 2"; cat "$tmp/last.err"; return; fi
    if [ -e "$out" ] || [ -e "$out.tmp" ]; then bad "$name: left $out behind"; return; fi
    if [ "$(wc -l <"$tmp/last.err")" -ne 1 ]; then bad "$name: expected one error line"; cat "$tmp/last.err"; return; fi
    ok "$name ($(cat "$tmp/last.err"))"
}
conv="$py $scripts/ncsn_convert.py"
evl="$py $scripts/ncsn_eval.py"

# ---- idx: first 500 Fashion-MNIST training images, resized to 16x16, with labels
check "idx convert --size 16 --limit 500 --labels" \
    $conv --format idx "$fm/train-images-idx3-ubyte.gz" --label-file "$fm/train-labels-idx1-ubyte.gz" \
        --size 16 --limit 500 --out "$tmp/fm16.h5"
check "idx output: uint8 [500,16,16], labels, attributes" $py - "$tmp/fm16.h5" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as f:
    x, l = f["images"], f["labels"]
    assert x.shape == (500, 16, 16) and x.dtype == np.uint8, (x.shape, x.dtype)
    assert l.shape == (500,) and l.dtype == np.uint8 and l[()].max() <= 9, (l.shape, l.dtype)
    assert x.chunks is not None and x.chunks[0] > 1, x.chunks
    assert b"train-images" in x.attrs["source"] and x.attrs["created_by"]
    assert x[()].std() > 10  # real images, not a constant
EOF

# box filter: 28 -> 14 must equal the 2x2 block mean of the unresized images (rounded)
check "idx convert --size 14 (box filter) and unresized" bash -c "
    $conv --format idx '$fm/t10k-images-idx3-ubyte.gz' --limit 50 --size 14 --out '$tmp/fm14.h5' &&
    $conv --format idx '$fm/t10k-images-idx3-ubyte.gz' --limit 50 --labels --out '$tmp/fm28.h5'"
check "box filter equals 2x2 block means; labels match t10k" $py - "$tmp" "$fm" <<'EOF'
import sys, gzip, h5py, numpy as np
tmp, fm = sys.argv[1:]
with h5py.File(f"{tmp}/fm28.h5") as f:
    x28, lab = f["images"][()], f["labels"][()]
with h5py.File(f"{tmp}/fm14.h5") as f:
    x14 = f["images"][()]
    assert f["images"].attrs["resize_method"] == b"box"
ref = np.clip(np.rint(x28.reshape(50, 14, 2, 14, 2).astype(np.float64).mean(axis=(2, 4))), 0, 255)
assert x14.shape == (50, 14, 14) and np.array_equal(x14, ref.astype(np.uint8))
raw = gzip.open(f"{fm}/t10k-labels-idx1-ubyte.gz").read()
assert np.array_equal(lab, np.frombuffer(raw, np.uint8, offset=8)[:50])
assert np.array_equal(x28[0], np.frombuffer(gzip.open(f"{fm}/t10k-images-idx3-ubyte.gz").read(),
                                            np.uint8, offset=16)[:784].reshape(28, 28))
EOF

# ---- npy: uint8 NHWC stored as is; float NCHW stored with layout; two inputs concatenated
$py - "$tmp" <<'EOF' || bad "make synthetic npy files"
import sys, numpy as np
tmp = sys.argv[1]
rng = np.random.default_rng(5)
np.save(f"{tmp}/u8.npy", rng.integers(0, 256, (7, 8, 6, 3), dtype=np.uint8))
np.save(f"{tmp}/u8b.npy", rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8))
np.save(f"{tmp}/f.npy", rng.uniform(-1, 1, (6, 3, 8, 8)))          # float64 NCHW
np.save(f"{tmp}/f_bad.npy", rng.uniform(-1, 1, (6, 3, 8, 8)) * 2)  # out of range
np.save(f"{tmp}/lab.npy", np.arange(7) % 3)
EOF
check "npy uint8 convert (two inputs, --limit 10, --dataset pix)" \
    $conv --format npy "$tmp/u8.npy" "$tmp/u8b.npy" --limit 10 --out "$tmp/u8.h5" --dataset pix
check "npy float convert" $conv --format npy "$tmp/f.npy" --out "$tmp/f.h5"
check "npy float convert --size 4 (box)" $conv --format npy "$tmp/f.npy" --size 4 --out "$tmp/f4.h5"
check "npy outputs: values, dtypes, layout" $py - "$tmp" <<'EOF'
import sys, h5py, numpy as np
tmp = sys.argv[1]
want = np.concatenate([np.load(f"{tmp}/u8.npy"), np.load(f"{tmp}/u8b.npy")])[:10]
with h5py.File(f"{tmp}/u8.h5") as f:
    assert "pix" in f and "labels" not in f and "layout" not in f["pix"].attrs
    assert f["pix"].dtype == np.uint8 and np.array_equal(f["pix"][()], want)
src = np.load(f"{tmp}/f.npy")
with h5py.File(f"{tmp}/f.h5") as f:
    x = f["images"]
    assert x.dtype == np.float32 and x.shape == (6, 3, 8, 8) and x.attrs["layout"] == b"NCHW"
    assert np.array_equal(x[()], src.astype(np.float32))
with h5py.File(f"{tmp}/f4.h5") as f:
    x = f["images"][()]
    ref = src.reshape(6, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    assert x.shape == (6, 3, 4, 4) and np.allclose(x, ref, atol=1e-6)
EOF
expect_fail "npy float outside [-1,1] refused" "$tmp/bad.h5" $conv --format npy "$tmp/f_bad.npy" --out "$tmp/bad.h5"

# ---- cifar: a synthetic CIFAR-10 binary file of 4 records (label + R, G, B planes)
$py - "$tmp" <<'EOF' || bad "make synthetic CIFAR file"
import sys, numpy as np
tmp = sys.argv[1]
rng = np.random.default_rng(7)
chw = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
chw[0, 0], chw[0, 1], chw[0, 2] = 10, 20, 30   # image 0: constant R=10 G=20 B=30
labels = np.array([3, 0, 9, 5], dtype=np.uint8)
with open(f"{tmp}/cifar.bin", "wb") as f:
    for i in range(4):
        f.write(bytes([labels[i]]) + chw[i].tobytes())
np.save(f"{tmp}/cifar_chw.npy", chw)
with open(f"{tmp}/cifar_short.bin", "wb") as f:
    f.write(open(f"{tmp}/cifar.bin", "rb").read()[:-100])
EOF
check "cifar convert" $conv --format cifar "$tmp/cifar.bin" --out "$tmp/cifar.h5"
check "cifar output: uint8 [4,32,32,3] HWC, labels" $py - "$tmp" <<'EOF'
import sys, h5py, numpy as np
tmp = sys.argv[1]
chw = np.load(f"{tmp}/cifar_chw.npy")
with h5py.File(f"{tmp}/cifar.h5") as f:
    x, l = f["images"][()], f["labels"][()]
assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8
assert list(l) == [3, 0, 9, 5]
assert (x[0, 5, 7] == [10, 20, 30]).all()           # channels last, in R, G, B order
assert np.array_equal(x, chw.transpose(0, 2, 3, 1))
EOF
expect_fail "cifar wrong record size refused" "$tmp/bad.h5" $conv --format cifar "$tmp/cifar_short.bin" --out "$tmp/bad.h5"

# ---- corrupted IDX: bad magic, truncated, missing file
$py - "$tmp" "$fm" <<'EOF' || bad "make corrupted IDX files"
import sys, gzip
tmp, fm = sys.argv[1:]
raw = bytearray(gzip.open(f"{fm}/t10k-images-idx3-ubyte.gz").read()[:16 + 784 * 20])
raw[4:8] = (20).to_bytes(4, "big")
open(f"{tmp}/good.idx", "wb").write(raw)
bad = bytearray(raw); bad[2] = 0x42
open(f"{tmp}/badmagic.idx", "wb").write(bad)
open(f"{tmp}/short.idx", "wb").write(raw[:-10])
EOF
check "small uncompressed IDX converts" $conv --format idx "$tmp/good.idx" --out "$tmp/good.h5"
expect_fail "IDX bad magic: exit 2, no output" "$tmp/bad.h5" $conv --format idx "$tmp/badmagic.idx" --out "$tmp/bad.h5"
grep -q "badmagic.idx: bad magic number" "$tmp/last.err" && ok "bad magic message names file and fault" || bad "bad magic message"
expect_fail "IDX label file given as images" "$tmp/bad.h5" $conv --format idx "$fm/t10k-labels-idx1-ubyte.gz" --out "$tmp/bad.h5"
expect_fail "IDX truncated: exit 2, no output" "$tmp/bad.h5" $conv --format idx "$tmp/short.idx" --out "$tmp/bad.h5"
expect_fail "missing input: exit 2, no output" "$tmp/bad.h5" $conv --format idx "$tmp/nonexistent.idx" --out "$tmp/bad.h5"
expect_fail "IDX labels count mismatch" "$tmp/bad.h5" $conv --format idx "$tmp/good.idx" \
    --label-file "$fm/t10k-labels-idx1-ubyte.gz" --out "$tmp/bad.h5"

# ---- eval: held-out = t10k images 0..3999; fake samples = real t10k images 6000..6999
check "convert t10k held-out set" \
    $conv --format idx "$fm/t10k-images-idx3-ubyte.gz" --labels --limit 4000 --out "$tmp/held.h5"
check "convert t10k for fake samples" \
    $conv --format idx "$fm/t10k-images-idx3-ubyte.gz" --limit 7000 --out "$tmp/t10k7.h5"
$py - "$tmp" <<'EOF' || bad "make samples files"
import sys, h5py, numpy as np
tmp = sys.argv[1]
with h5py.File(f"{tmp}/t10k7.h5") as f:
    real = f["images"][6000:7000][:, None].astype(np.float32) / 127.5 - 1
with h5py.File(f"{tmp}/real_samples.h5", "w") as f:
    f["samples"] = real
noise = np.random.default_rng(3).uniform(-1, 1, real.shape).astype(np.float32)
with h5py.File(f"{tmp}/noise_samples.h5", "w") as f:
    f["samples"] = noise
with h5py.File(f"{tmp}/wrong_shape.h5", "w") as f:
    f["samples"] = np.zeros((10, 3, 28, 28), np.float32)
EOF
check "eval real samples --store" $evl "$tmp/real_samples.h5" --data "$tmp/held.h5" --n-ref 2000 --store
check "eval noise samples --store" $evl "$tmp/noise_samples.h5" --data "$tmp/held.h5" --n-ref 2000 --store
check "eval: real ratio ~1, noise clearly worse in ratio, MMD and coverage" $py - "$tmp" <<'EOF'
import sys, h5py
tmp = sys.argv[1]
def attrs(name):
    with h5py.File(f"{tmp}/{name}") as f:
        return dict(f["samples"].attrs)
r, n = attrs("real_samples.h5"), attrs("noise_samples.h5")
print("real:", {k: r[k] for k in ("eval_nn_ratio", "eval_mmd2", "eval_mmd2_real", "eval_coverage")})
print("noise:", {k: n[k] for k in ("eval_nn_ratio", "eval_mmd2", "eval_coverage")})
assert 0.85 < r["eval_nn_ratio"] < 1.15, r["eval_nn_ratio"]
assert n["eval_nn_ratio"] > 1.5 * r["eval_nn_ratio"], (n["eval_nn_ratio"], r["eval_nn_ratio"])
assert abs(r["eval_mmd2"]) < 0.01 and abs(r["eval_mmd2_real"]) < 0.01
assert n["eval_mmd2"] > 10 * max(abs(r["eval_mmd2"]), 1e-3), (n["eval_mmd2"], r["eval_mmd2"])
assert r["eval_coverage"] >= 0.9 and n["eval_coverage"] < r["eval_coverage"]
assert r["eval_class_hist"].sum() == 1000 and r["eval_n_ref"] == 2000 and r["eval_n_real"] == 1000
assert r["eval_mmd_bandwidth"] == n["eval_mmd_bandwidth"]  # fixed by the data alone
EOF
# deterministic: a second run prints the same table
$evl "$tmp/real_samples.h5" --data "$tmp/held.h5" >"$tmp/e1.txt" 2>&1
$evl "$tmp/real_samples.h5" --data "$tmp/held.h5" >"$tmp/e2.txt" 2>&1
if cmp -s "$tmp/e1.txt" "$tmp/e2.txt" && [ -s "$tmp/e1.txt" ]; then ok "eval deterministic"; else bad "eval deterministic"; fi
check "eval --json" $evl "$tmp/real_samples.h5" --data "$tmp/held.h5" --json "$tmp/e.json"
check "eval --json: the stored numbers, for samples and real images, in one object" $py - "$tmp" <<'EOF'
import sys, json, h5py
tmp = sys.argv[1]
j = json.load(open(f"{tmp}/e.json"))
with h5py.File(f"{tmp}/real_samples.h5") as f:
    a = f["samples"].attrs
    for k in ("nn_ratio", "nn_dist_real", "mmd2", "mmd2_real", "coverage", "coverage_real"):
        assert j[k] == a[f"eval_{k}"], (k, j[k], a[f"eval_{k}"])
    assert j["class_hist"] == list(a["eval_class_hist"]) and j["n_samples"] == 1000
    assert "fd" not in j and not any(k.startswith("eval_fd") for k in a)
EOF
expect_fail "eval shape mismatch refused" "$tmp/none" $evl "$tmp/wrong_shape.h5" --data "$tmp/held.h5"
expect_fail "eval missing dataset refused" "$tmp/none" $evl "$tmp/real_samples.h5" --data "$tmp/held.h5" --dataset nope

# ---- plot_loss: synthetic metrics.csv with a resume that repeats steps 80..100
mkdir -p "$tmp/run"
$py - "$tmp/run/metrics.csv" <<'EOF' || bad "make metrics.csv"
import sys, math
with open(sys.argv[1], "w") as f:
    f.write("step,loss,lr,grad_norm,images_per_s,wall_s\n")
    for s in range(1, 101):
        f.write(f"{s},{900 * math.exp(-s / 30) + 100},0.001,1.5,120.0,{s * 0.5}\n")
    for s in range(80, 151):  # resumed from the checkpoint of step 79
        f.write(f"{s},{900 * math.exp(-s / 30) + 90},0.001,1.4,118.0,{s * 0.5 + 7}\n")
EOF
check "plot_loss default output" $py "$scripts/plot_loss.py" "$tmp/run"
if grep -q "plotted 150 steps" "$tmp/last.log"; then ok "plot_loss keeps one row per step"; else bad "plot_loss step count"; cat "$tmp/last.log"; fi
check "plot_loss --out" $py "$scripts/plot_loss.py" "$tmp/run" --out "$tmp/other.png" --log-y
for png in "$tmp/run/loss.png" "$tmp/other.png"; do
    if [ -s "$png" ] && [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; then
        ok "PNG signature $(basename "$png")"
    else
        bad "PNG missing or bad: $png"
    fi
done
mkdir -p "$tmp/emptyrun"
expect_fail "plot_loss without metrics.csv refused" "$tmp/emptyrun/loss.png" $py "$scripts/plot_loss.py" "$tmp/emptyrun"

# mixture_exact.py: the annealed sampler driven by the exact mixture score
# reproduces the weights without the clamp, and the clamp breaks them
check "mixture_exact without clamp" $py "$scripts/mixture_exact.py" --seeds 0,1 --steps-each 30 --no-clip
if grep -q "0/2 seeds fail" "$tmp/last.log"; then ok "exact score, no clamp: right proportions"; else bad "exact score, no clamp"; cat "$tmp/last.log"; fi
check "mixture_exact with clamp" $py "$scripts/mixture_exact.py" --seeds 0 --steps-each 30
if grep -q "1/1 seeds fail" "$tmp/last.log"; then ok "exact score, clamp: wrong proportions"; else bad "exact score, clamp"; cat "$tmp/last.log"; fi
check "mixture_exact --ncsnv2" $py "$scripts/mixture_exact.py" --seeds 0 --ncsnv2 5 --no-clip
if grep -q "gamma 1.35.*23 levels" "$tmp/last.log"; then ok "NCSNv2 rules for D=64"; else bad "NCSNv2 rules"; cat "$tmp/last.log"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
