#!/usr/bin/python3
"""test_sample.py: `ncsn sample` against an independent reference (issue 5).

Usage: /usr/bin/python3 tests/test_sample.py NCSN_BINARY WORKDIR

The reference runs annealed Langevin dynamics (DESIGN.md section 3) in
float64 with the PyTorch network of tests/ref/ncsn_ref.py and the random
draws reproduced by tests/philox_ref.py (an independent numpy Philox4x32-10):
initial state of sample k from (seed, 5, 0, k), the Langevin noise of global
step g = level * T + step from (seed, 6, g, k), the inpainting noise of level
i from (seed, 8, i, k). Models are small (nf 8) with random weights in every
parameter, written to WORKDIR through the reference's HDF5 writer.

Checks:
  (a) /samples and /trajectory against the reference, clip on and off, a
      1-channel square and a 3-channel non-square configuration:
      max|x_c - x_ref| / max|x_ref| <= REL_TOL (see below);
  (b) 1, 2, 3 and 4 ranks (oversubscribed), other --micro-batch values and
      --keep-weights on/off/auto give bitwise identical samples and
      trajectories (also with inpainting and a per-sample mask; 7 samples
      split unevenly; and --n 1 on 2 and 4 ranks, --n 2 on 3 and 4, where
      some ranks hold no sample); auto says it keeps them at 1 sample per
      pass, and drops them when they would not fit (NCSN_MEMORY_LIMIT),
      where on stops with exit 2;
  (c) clip: every sample in [-1, 1]; --no-clip with a large step: some
      outside; --denoise against the reference (clip on and off);
  (d) --init: with --steps-each 1 and a tiny --step-lr the samples equal the
      given tensor; and the reference comparison from that tensor;
      --init-dist uniform/normal: the initial state equals philox_ref's draw;
  (e) inpainting: known pixels end equal to the held values of the last
      level, known + sigma_{L-1} * normal(seed, 8, L-1, k) in float32 (to
      2e-7 relative, one float32 ulp, since numpy's log/cos may differ from
      glibc's in the last bit; bitwise in practice), unknown pixels differ
      from the known image; reference comparison; a shared [1,C,H,W] mask
      with per-sample images and per-sample masks with a shared [1,...] image;
  (f) PNG grids decode (zlib + struct, every filter type) with the right size
      and colour type for 1 and 3 channels, cols = ceil(sqrt(n)), 1-px gaps,
      and their pixels equal the samples mapped to 0..255; the
      `<stem>_trajectory.png` strip likewise (also for a --png name without
      ".png"); /trajectory is [L,N,C,H,W] and its last level equals /samples
      without --denoise;
  (--ema) on the checkpoint of a 4-step `ncsn train --ema` run, --ema gives
      the samples of a model file holding its /ema weights, and no --ema
      those of its /model weights (bitwise);
  (g) bad options and files: exit 2, one line on stderr naming the option or
      file, and no output file (samples, temporary or PNG) left behind
      (also: --sampler, --step-lr text, auto with one level or with cas,
      cas with --steps-each 5, cas with eta outside its bounds, heun with
      --steps-each 5 or a --step-lr);
  (h) --sampler cas (consistent annealed sampling) against the reference's
      CAS, clip on and off, with and without --denoise, trajectories,
      attributes (sampler, steps_each 1, eta); the ALS default --steps-each
      does not apply; inpainting; 1 rank vs 2 ranks and micro-batches bitwise
      (plain, denoise/no-clip/normal, inpainting);
  (i) --step-lr auto: the step_lr attribute equals NCSNv2's technique 4
      computed here independently (1e-6 relative) for T = 3 and 20, and the
      samples equal those of that step given by hand;
  (j) --sampler heun (Heun's steps of the probability-flow ODE, Karras et
      al. 2022) against the reference's, clip on and off, with and without
      --denoise, trajectories, attributes; inpainting; 1, 2 and 3 ranks and
      micro-batches bitwise.

Exit status: 0 pass, 1 failure, 77 skip (numpy, torch or h5py missing),
2 bad usage.
"""

import math
import os
import shlex
import struct
import subprocess
import sys
import time
import zlib

try:
    import numpy as np
    import torch
    import h5py
except ImportError as e:  # a missing optional tool is a skip, not a pass
    print(f"SKIP: test_sample needs numpy, torch and h5py for {sys.executable}: {e}")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "ref"))
import philox_ref as P  # noqa: E402
import ncsn_ref as R  # noqa: E402

# Tolerance of the reference comparison, relative to the largest |x_ref|.
# The C sampler works in float32 (weights, activations, x, a, sqrt(2a)); the
# reference in float64 from the same float32 weights and the same float32
# noise. Two factors set the difference:
#   - one score evaluation of the C network (Winograd F(4x4,3x3) convolutions
#     since commit 0ef30c4) differs from float64 by up to 2e-5 (largest error
#     over largest value; 1e-5 normwise) on the states of these runs;
#   - the dynamics amplify a per-evaluation score error: perturbing the
#     reference's score by 1e-6 relative noise at every evaluation moves the
#     result of config a by 7.7e-6 with clip (saturated pixels make the
#     instance norms sensitive) and 1.2e-6 without; these steps are
#     deliberately large (a = 0.1 at the first level of config a).
# So up to about 2e-5 x 8 = 1.6e-4 is explained by float32 arithmetic;
# measured: up to 7.5e-5 (config a, clip on; 7e-6 without clip, 2e-6 for
# config b). 3e-4 leaves a margin of about 2 over that worst case and 4 over
# the measurement, while a wrong index, sign, step size, label, clip or noise
# stream shows up as 1e-2 .. 1 (checked by mutating sample.c).
REL_TOL = 3e-4
# CAS with the clamp: its first steps are longer (a = eta sigma_1^2 = 0.8 at
# the first level of config a), and perturbing the reference's score by 1e-6
# relative noise moves its result by 2.7e-5 (27x; 2.8e-6 without clip), so
# the 2e-5 of one C score evaluation explains up to about 5e-4. Measured:
# 3.1e-4 at eta 0.8, 4.6e-4 at eta 0.95. 1e-3 keeps a margin of 2, while a
# wrong noise level (sigma_i for sigma_{i+1}), step (eta sigma_i), noise
# stream or noise after the last level shows up as 5e-3 .. 2 (checked by
# mutating the reference).
CAS_CLIP_TOL = 1e-3
# Heun (--sampler heun): no noise washes out a float32 difference, and the
# random-weight models here take long steps, so float32 against float64
# measured up to 2.7e-4 without the clamp and 2.5e-3 with it (config a,
# sampler seed 1014; config b: 2.6e-5). A wrong label or sigma in the corrector, or
# the Euler step alone, shows up as 0.23 .. 1.3 (mutated reference, both
# configs, clamp on and off). 1e-2 keeps a margin of 4 over the worst
# measurement and of 20 below the smallest mutation.
HEUN_TOL = 1e-2
RUN_TIMEOUT = 300

CONFIGS = {
    # 1 channel, square, scale_by_sigma: a s = step_lr sigma_i / sigma_L^2 out.
    "a": dict(C=1, nf=8, L=4, dilations=(1, 2, 4, 8), scale=True,
              sigmas=(1.0, 0.5, 0.25, 0.1), N=6, H=8, W=8, T=3, step_lr=1e-3, seed=1001),
    # 3 channels, non-square, no scaling by sigma, other dilations.
    "b": dict(C=3, nf=8, L=3, dilations=(1, 3, 2, 1), scale=False,
              sigmas=(0.8, 0.3, 0.1), N=4, H=6, W=10, T=3, step_lr=2e-4, seed=2002),
}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# --------------------------------------------------------------------------
# Running the binary
# --------------------------------------------------------------------------

def env():
    e = dict(os.environ)
    e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMPI_MCA_rmaps_base_oversubscribe="1", HDF5_USE_FILE_LOCKING="FALSE",
             OPENBLAS_NUM_THREADS="1")
    return e


def launcher(ranks):
    if ranks == 1:
        return []  # a plain process is rank 0 of 1
    launch = os.environ.get("MPI_LAUNCH", "mpirun --oversubscribe -np")
    return shlex.split(launch) + [str(ranks)]


def run(binary, args, ranks=1, expect=0, extra_env=None):
    cmd = launcher(ranks) + [binary] + [str(a) for a in args]
    e = env()
    e.update(extra_env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                       timeout=RUN_TIMEOUT, universal_newlines=True)
    if expect is not None and p.returncode != expect:
        raise Failure(f"{' '.join(cmd)}: exit {p.returncode}, expected {expect}\n"
                      f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
    return p


def sample(binary, model, out, n, H, W, T, step_lr, seed, extra=(), ranks=1):
    args = ["sample", "--model", model, "--out", out, "--n", n, "--height", H, "--width", W,
            "--steps-each", T, "--step-lr", repr(float(step_lr)), "--seed", seed] + list(extra)
    run(binary, args, ranks=ranks)
    with h5py.File(out, "r") as f:
        s = np.asarray(f["samples"][()])
        traj = np.asarray(f["trajectory"][()]) if "trajectory" in f else None
        attrs = dict(f["samples"].attrs)
    return s, traj, attrs


def write_x(path, name, x):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=np.asarray(x, dtype=np.float32))


# --------------------------------------------------------------------------
# Models and the reference sampler
# --------------------------------------------------------------------------

def make_model(path, cfg):
    """A small reference network with random values in every parameter."""
    torch.manual_seed(cfg["seed"])
    m = R.NCSNRef(cfg["C"], cfg["nf"], cfg["L"], cfg["dilations"], scale_by_sigma=cfg["scale"],
                  sigmas=np.asarray(cfg["sigmas"], dtype=np.float32))
    with torch.no_grad():
        for key, p in m.named_parameters():
            if key.endswith("embed.weight"):
                p[:, :m.nf].normal_(1.0, 0.2)      # gamma
                p[:, m.nf:].normal_(0.0, 0.3)      # beta
            elif key.endswith("bias"):
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.3)
    R.save_model_h5(m, path)
    ref = R.load_model_h5(path).double()           # exactly the float32 weights of the file
    ref.eval()
    return ref


def initial_state(n, per, seed, dist):
    if dist == "normal":
        return np.stack([P.fill_normal(per, seed, P.SAMPLE_INIT, 0, k) for k in range(n)])
    return np.stack([P.fill_uniform(per, seed, P.SAMPLE_INIT, 0, k, -1.0, 1.0) for k in range(n)])


def held_values(known, mask, n, per, seed, level, sigma, dtype):
    """known + sigma * normal(seed, 8, level, k), [n, per], in `dtype` arithmetic."""
    kn = np.broadcast_to(known.reshape(known.shape[0], per), (n, per)).astype(dtype)
    z = np.stack([P.fill_normal(per, seed, P.INPAINT, level, k) for k in range(n)]).astype(dtype)
    return kn + dtype(sigma) * z


def reference_sample(model, shape, T, step_lr, seed, clip=True, denoise=False, init=None,
                     init_dist="uniform", known=None, mask=None, sampler="als"):
    """Annealed Langevin dynamics of DESIGN.md 3 in float64, or with
    sampler="cas" consistent annealed sampling (Jolicoeur-Martineau et al.
    2021, Algorithm 2 as in their code): one step per level,
    x <- x + eta sigma_i^2 s(x, i) + beta_i sigma_{i+1} z with
    eta = step_lr / sigma_L^2, beta_i = sqrt(1 - ((1 - eta) sigma_i / sigma_{i+1})^2),
    no noise after the last level. Returns (x, traj)."""
    n, C, H, W = shape
    per = C * H * W
    sig = model.sigmas.detach().numpy().astype(np.float64)
    L = len(sig)
    x = (np.asarray(init, dtype=np.float32).reshape(n, per) if init is not None
         else initial_state(n, per, seed, init_dist)).astype(np.float64)
    if mask is not None:
        m = np.broadcast_to(mask.reshape(mask.shape[0], per) > 0.5, (n, per))
    traj = []

    def score(x, level):
        y = torch.full((n,), level, dtype=torch.int64)
        with torch.no_grad():
            return model(torch.from_numpy(x.reshape(n, C, H, W)), y).numpy().reshape(n, per)

    if sampler == "cas":
        T, eta = 1, step_lr / sig[-1] ** 2
    if sampler == "heun":  # Karras et al. 2022: Heun on dx/dsigma = -sigma s(x, sigma)
        T = 0
    for i in range(L):
        if sampler == "cas":
            a = eta * sig[i] ** 2
            c = sig[i + 1] * math.sqrt(1.0 - ((1.0 - eta) * sig[i] / sig[i + 1]) ** 2) if i + 1 < L else 0.0
        else:
            a = step_lr * (sig[i] / sig[-1]) ** 2
            c = math.sqrt(2 * a)
        if mask is not None:
            held = held_values(known, mask, n, per, seed, i, sig[i], np.float64)
            x = np.where(m, held, x)
        for t in range(T):
            g = i * T + t
            z = np.stack([P.fill_normal(per, seed, P.LANGEVIN, g, k) for k in range(n)])
            x = x + a * score(x, i) + c * z.astype(np.float64)
            if clip:
                x = np.clip(x, -1.0, 1.0)
            if mask is not None:
                x = np.where(m, held, x)
        if sampler == "heun" and i + 1 < L:
            h = sig[i + 1] - sig[i]
            d = -sig[i] * score(x, i)
            x_e = x + h * d
            x = x + h / 2 * (d - sig[i + 1] * score(x_e, i + 1))
            if clip:
                x = np.clip(x, -1.0, 1.0)
            if mask is not None:
                x = np.where(m, held, x)
        traj.append(x.reshape(n, C, H, W).copy())
    if denoise:
        x = x + sig[-1] ** 2 * score(x, L - 1)
        if clip:
            x = np.clip(x, -1.0, 1.0)
    return x.reshape(n, C, H, W), np.stack(traj)


def rel_err(c, ref):
    return float(np.abs(c.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def compare(name, c, ref, stats, tol=REL_TOL):
    e = rel_err(c, ref)
    stats.append((name, e, tol))
    print(f"  {name:<44} max rel err {e:.2e}")
    check(e <= tol, f"{name}: max|x_c - x_ref|/max|x_ref| = {e:.3e} > {tol:g}")


# --------------------------------------------------------------------------
# PNG decoding (no third-party decoder)
# --------------------------------------------------------------------------

def png_decode(path):
    """Returns (pixels uint8 [H, W, C], colour type). 8-bit grey or RGB only."""
    data = open(path, "rb").read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: no PNG signature")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        check(zlib.crc32(ctype + body) & 0xFFFFFFFF == crc, f"{path}: bad CRC in {ctype!r}")
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
        elif ctype == b"IEND":
            break
        pos += 12 + length
    check(ihdr is not None, f"{path}: no IHDR")
    width, height, depth, color, _, _, interlace = ihdr
    check(depth == 8 and color in (0, 2) and interlace == 0,
          f"{path}: depth {depth} colour type {color} interlace {interlace}")
    ch = 1 if color == 0 else 3
    raw = zlib.decompress(idat)
    stride = width * ch
    check(len(raw) == height * (stride + 1), f"{path}: {len(raw)} bytes of image data")
    out = np.zeros((height, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        f = raw[y * (stride + 1)]
        cur = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int64)
        rec = np.zeros(stride, dtype=np.int64)
        for i in range(stride):
            a = rec[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) // 2
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                raise Failure(f"{path}: filter type {f}")
            rec[i] = (cur[i] + pred) & 0xFF
        out[y] = rec
        prev = rec
    return out.reshape(height, width, ch).astype(np.uint8), color


def to_bytes(x):
    """[-1, 1] -> 0..255 as png.c documents: (v + 1) 127.5, clamped, rounded."""
    u = (x.astype(np.float32) + np.float32(1)) * np.float32(127.5)
    u = np.clip(u, 0, 255)
    return np.floor(u + np.float32(0.5)).astype(np.int64)


def check_grid(path, imgs, cols):
    """imgs [n, C, H, W]: the picture is a grid with `cols` columns and 1-px gaps."""
    n, C, H, W = imgs.shape
    pix, color = png_decode(path)
    rows = (n + cols - 1) // cols
    want = (rows * (H + 1) + 1, cols * (W + 1) + 1)
    check(pix.shape[:2] == want, f"{path}: {pix.shape[1]} x {pix.shape[0]} pixels, expected "
                                 f"{want[1]} x {want[0]} ({n} images, {cols} columns)")
    check(color == (0 if C == 1 else 2), f"{path}: colour type {color} for {C} channels")
    worst = 0
    for i in range(n):
        oy, ox = 1 + (i // cols) * (H + 1), 1 + (i % cols) * (W + 1)
        tile = pix[oy:oy + H, ox:ox + W, :].astype(np.int64)     # [H, W, C]
        worst = max(worst, int(np.abs(tile - to_bytes(imgs[i]).transpose(1, 2, 0)).max()))
    check(worst <= 1, f"{path}: a tile differs from its image by {worst} grey levels")
    gaps = np.ones(pix.shape[:2], dtype=bool)
    for i in range(rows * cols):
        oy, ox = 1 + (i // cols) * (H + 1), 1 + (i % cols) * (W + 1)
        gaps[oy:oy + H, ox:ox + W] = False
    check(int(pix[gaps].max(initial=0)) == 0, f"{path}: the gaps are not black")
    print(f"  {os.path.basename(path)}: {pix.shape[1]} x {pix.shape[0]}, {C} channel(s), "
          f"{n} tiles ok (largest tile difference {worst})")


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------

def check_reference(binary, wd, name, cfg, model, stats):
    """(a), (c) denoise, (d) init, (e) inpainting against the reference."""
    path = os.path.join(wd, f"model_{name}.h5")
    n, C, H, W, T = cfg["N"], cfg["C"], cfg["H"], cfg["W"], cfg["T"]
    shape = (n, C, H, W)
    lr, seed = cfg["step_lr"], cfg["seed"] + 7
    out = os.path.join(wd, f"s_{name}.h5")
    print(f"config {name}: C={C} nf={cfg['nf']} L={cfg['L']} N={n} {H}x{W} T={T} step_lr={lr:g}")

    for clip in (True, False):
        extra = ["--trajectory"] + ([] if clip else ["--no-clip"])
        s, traj, attrs = sample(binary, path, out, n, H, W, T, lr, seed, extra)
        x_ref, traj_ref = reference_sample(model, shape, T, lr, seed, clip=clip)
        tag = "clip" if clip else "no-clip"
        check(s.shape == shape, f"/samples has shape {s.shape}, expected {shape}")
        check(traj is not None and traj.shape == (cfg["L"],) + shape,
              f"/trajectory has shape {None if traj is None else traj.shape}")
        compare(f"{name} {tag} samples", s, x_ref, stats)
        compare(f"{name} {tag} trajectory", traj, traj_ref, stats)
        check(np.array_equal(traj[-1], s), "/trajectory[L-1] differs from /samples without --denoise")
        if clip:
            check(np.abs(s).max() <= 1.0, "clip on but a sample leaves [-1, 1]")
            check(attrs["clip"] == 1 and attrs["steps_each"] == T and attrs["seed_text"] == str(seed).encode()
                  and np.allclose(attrs["sigmas"], cfg["sigmas"]) and attrs["step_lr"] == lr,
                  f"/samples attributes: {attrs}")
        else:
            check(attrs["clip"] == 0, "attribute clip should be 0 with --no-clip")

    for clip in (True, False):
        extra = ["--denoise", "--trajectory"] + ([] if clip else ["--no-clip"])
        s, traj, attrs = sample(binary, path, out, n, H, W, T, lr, seed, extra)
        x_ref, _ = reference_sample(model, shape, T, lr, seed, clip=clip, denoise=True)
        compare(f"{name} denoise {'clip' if clip else 'no-clip'} samples", s, x_ref, stats)
        check(attrs["denoise"] == 1, "attribute denoise should be 1")
        check(not np.array_equal(traj[-1], s), "--denoise changed nothing")

    # --init-dist normal: the reference from philox_ref's normal draws.
    s, _, _ = sample(binary, path, out, n, H, W, T, lr, seed, ["--init-dist", "normal", "--no-clip"])
    x_ref, _ = reference_sample(model, shape, T, lr, seed, clip=False, init_dist="normal")
    compare(f"{name} init-dist normal samples", s, x_ref, stats)

    # (d) --init: a given tensor, with values outside [-1, 1] too.
    rng = np.random.default_rng(cfg["seed"])
    x0 = (0.7 * rng.standard_normal(shape)).astype(np.float32)
    init = os.path.join(wd, f"init_{name}.h5")
    write_x(init, "x", x0)
    s, _, attrs = sample(binary, path, out, n, H, W, 1, 1e-30, seed, ["--init", init, "--no-clip"])
    d = float(np.abs(s - x0).max())
    print(f"  {name} --init, 1 step of step-lr 1e-30: max|x - init| = {d:.1e}")
    check(d <= 1e-6, f"--init with a negligible step: samples are not the init tensor ({d:.2e})")
    check(attrs["init"] == init.encode(), f"attribute init is {attrs['init']!r}")
    for clip in (True, False):
        s, _, _ = sample(binary, path, out, n, H, W, T, lr, seed,
                         ["--init", init] + ([] if clip else ["--no-clip"]))
        x_ref, _ = reference_sample(model, shape, T, lr, seed, clip=clip, init=x0)
        compare(f"{name} --init {'clip' if clip else 'no-clip'} samples", s, x_ref, stats)

    # (e) inpainting: per-sample known images with a shared mask, and a
    # shared known image with per-sample masks.
    known_n = rng.uniform(-0.9, 0.9, shape).astype(np.float32)
    mask_1 = (rng.uniform(size=(1, C, H, W)) < 0.5).astype(np.float32)
    known_1 = known_n[:1]
    mask_n = (rng.uniform(size=shape) < 0.4).astype(np.float32)
    L, sig = cfg["L"], np.asarray(cfg["sigmas"], dtype=np.float32)
    for kname, known, mname, mask in (("known[N]", known_n, "mask[1]", mask_1),
                                      ("known[1]", known_1, "mask[N]", mask_n)):
        kpath, mpath = os.path.join(wd, f"known_{name}.h5"), os.path.join(wd, f"mask_{name}.h5")
        write_x(kpath, "x", known)
        write_x(mpath, "mask", mask)
        for clip in (True, False):
            extra = ["--inpaint", kpath, "--mask", mpath, "--trajectory"] + ([] if clip else ["--no-clip"])
            s, traj, attrs = sample(binary, path, out, n, H, W, T, lr, seed, extra)
            tag = f"{name} inpaint {kname} {mname} {'clip' if clip else 'no-clip'}"
            x_ref, traj_ref = reference_sample(model, shape, T, lr, seed, clip=clip,
                                               known=known, mask=mask)
            compare(tag, s, x_ref, stats)
            compare(tag + " traj", traj, traj_ref, stats)
            per = C * H * W
            m = np.broadcast_to(mask.reshape(mask.shape[0], per) > 0.5, (n, per))
            held = held_values(known, mask, n, per, seed, L - 1, sig[-1], np.float32)
            flat = s.reshape(n, per)
            dk = float(np.abs(flat[m] - held[m]).max())
            exact = int((flat[m] == held[m]).sum())
            print(f"  {tag}: known pixels vs known + sigma_L z: max diff {dk:.1e} "
                  f"({exact}/{int(m.sum())} bitwise equal)")
            check(dk <= 2e-7 * max(1.0, float(np.abs(held[m]).max())),
                  f"{tag}: known pixels differ from the held values of the last level by {dk:.2e}")
            kb = np.broadcast_to(known.reshape(known.shape[0], per), (n, per))
            frac = float((np.abs(flat[~m] - kb[~m]) > 1e-3).mean())
            check(frac > 0.95, f"{tag}: only {frac:.2%} of the unknown pixels differ from the known image")
            check(attrs["inpaint"] == kpath.encode() and attrs["mask"] == mpath.encode(),
                  "attributes inpaint/mask missing")


# CAS step sizes: eta = step_lr / sigma_L^2 inside (1 - min gamma_i, 1]
# (config a: gamma 0.5, 0.5, 0.4, so eta > 0.6; config b: 0.375, 0.333, so
# eta > 0.667).
CAS_ETA = {"a": 0.8, "b": 0.9}


def cas_step_lr(cfg, name):
    return CAS_ETA[name] * float(np.float32(cfg["sigmas"][-1])) ** 2


def inpaint_files(wd, prefix, rng, shape):
    """A known image per sample and one shared mask, drawn from rng and
    written to WD/PREFIX_known.h5 (/x) and WD/PREFIX_mask.h5 (/mask)."""
    n, C, H, W = shape
    known = rng.uniform(-0.9, 0.9, shape).astype(np.float32)
    mask = (rng.uniform(size=(1, C, H, W)) < 0.5).astype(np.float32)
    kpath, mpath = os.path.join(wd, f"{prefix}_known.h5"), os.path.join(wd, f"{prefix}_mask.h5")
    write_x(kpath, "x", known)
    write_x(mpath, "mask", mask)
    return known, mask, kpath, mpath


def check_cas(binary, wd, name, cfg, model, stats):
    """(h) --sampler cas against the reference: clip on and off, --denoise,
    trajectory, attributes; on config a also inpainting and 1 vs 2 ranks."""
    path = os.path.join(wd, f"model_{name}.h5")
    n, C, H, W = cfg["N"], cfg["C"], cfg["H"], cfg["W"]
    shape = (n, C, H, W)
    lr, seed = cas_step_lr(cfg, name), cfg["seed"] + 11
    out = os.path.join(wd, f"cas_{name}.h5")
    print(f"config {name} cas: eta {CAS_ETA[name]} (step_lr {lr:.6g}), one step per level")
    cas = ["--sampler", "cas"]
    for clip in (True, False):
        for denoise in (False, True):
            extra = cas + ["--trajectory"] + ([] if clip else ["--no-clip"]) + (["--denoise"] if denoise else [])
            s, traj, attrs = sample(binary, path, out, n, H, W, 1, lr, seed, extra)
            x_ref, traj_ref = reference_sample(model, shape, 1, lr, seed, clip=clip, denoise=denoise,
                                               sampler="cas")
            tag = f"{name} cas {'clip' if clip else 'no-clip'}{' denoise' if denoise else ''}"
            tol = CAS_CLIP_TOL if clip else REL_TOL
            compare(tag + " samples", s, x_ref, stats, tol)
            compare(tag + " trajectory", traj, traj_ref, stats, tol)
            check(np.array_equal(traj[-1], s) != denoise, f"{tag}: /trajectory[L-1] vs /samples")
            check(attrs["sampler"] == b"cas" and attrs["steps_each"] == 1 and attrs["step_lr"] == lr
                  and attrs["step_lr_auto"] == 0 and abs(attrs["eta"] - CAS_ETA[name]) < 1e-6,
                  f"{tag}: /samples attributes: {attrs}")
            if clip:
                check(np.abs(s).max() <= 1.0, f"{tag}: clip on but a sample leaves [-1, 1]")
    # Without --steps-each the ALS default (100) does not apply: one step.
    plain = os.path.join(wd, f"cas_{name}_default.h5")
    run(binary, ["sample", "--model", path, "--out", plain, "--n", n, "--height", H, "--width", W,
                 "--step-lr", repr(lr), "--seed", seed, "--sampler", "cas"])
    s1, _, _ = sample(binary, path, out, n, H, W, 1, lr, seed, cas)
    with h5py.File(plain, "r") as f:
        check(np.array_equal(f["samples"][()], s1), "cas without --steps-each differs from --steps-each 1")
    if name != "a":
        return
    rng = np.random.default_rng(cfg["seed"] + 1)
    known, mask, kpath, mpath = inpaint_files(wd, "cas", rng, shape)
    s, _, _ = sample(binary, path, out, n, H, W, 1, lr, seed, cas + ["--inpaint", kpath, "--mask", mpath])
    x_ref, _ = reference_sample(model, shape, 1, lr, seed, known=known, mask=mask, sampler="cas")
    compare(f"{name} cas inpaint samples", s, x_ref, stats, CAS_CLIP_TOL)
    # 1 vs 2 ranks and micro-batches: bitwise.
    n7 = 7
    write_x(kpath, "x", rng.uniform(-0.9, 0.9, (n7, C, H, W)))
    for label, extra in (("plain", []), ("denoise no-clip normal", ["--denoise", "--no-clip", "--init-dist", "normal"]),
                         ("inpaint", ["--inpaint", kpath, "--mask", mpath])):
        runs = {}
        for ranks, mb in ((1, 16), (1, 2), (2, 3), (2, 1)):
            runs[(ranks, mb)] = sample(binary, path, out, n7, H, W, 1, lr, 99,
                                       cas + extra + ["--trajectory", "--micro-batch", mb], ranks=ranks)[:2]
        base = runs[(1, 16)]
        for key, (s, traj) in runs.items():
            check(np.array_equal(s, base[0]) and np.array_equal(traj, base[1]),
                  f"cas {label}: {key[0]} rank(s) --micro-batch {key[1]} differs from 1 rank --micro-batch 16")
        print(f"  cas ranks/micro-batch ({label}): 1x16, 1x2, 2x3, 2x1 bitwise identical")


def check_heun(binary, wd, name, cfg, model, stats):
    """(j) --sampler heun against the reference (Heun's steps of the
    probability-flow ODE, no noise): clip on and off, --denoise,
    trajectory, attributes; on config a also inpainting and 1, 2 and 3
    ranks bitwise."""
    path = os.path.join(wd, f"model_{name}.h5")
    n, C, H, W = cfg["N"], cfg["C"], cfg["H"], cfg["W"]
    shape, seed = (n, C, H, W), cfg["seed"] + 13
    out = os.path.join(wd, f"heun_{name}.h5")

    def heun(extra, ranks=1, count=n):
        run(binary, ["sample", "--model", path, "--out", out, "--n", count, "--height", H, "--width", W,
                     "--seed", seed, "--sampler", "heun", "--trajectory"] + list(extra), ranks=ranks)
        with h5py.File(out, "r") as f:
            return np.asarray(f["samples"][()]), np.asarray(f["trajectory"][()]), dict(f["samples"].attrs)

    for clip in (True, False):
        for denoise in (False, True):
            extra = ([] if clip else ["--no-clip"]) + (["--denoise"] if denoise else [])
            s, traj, attrs = heun(extra)
            x_ref, traj_ref = reference_sample(model, shape, 1, 0.0, seed, clip=clip, denoise=denoise,
                                               sampler="heun")
            tag = f"{name} heun {'clip' if clip else 'no-clip'}{' denoise' if denoise else ''}"
            compare(tag + " samples", s, x_ref, stats, HEUN_TOL)
            compare(tag + " trajectory", traj, traj_ref, stats, HEUN_TOL)
            check(attrs["sampler"] == b"heun" and attrs["steps_each"] == 1, f"{tag}: /samples attributes: {attrs}")
            if clip:
                check(np.abs(s).max() <= 1.0, f"{tag}: clip on but a sample leaves [-1, 1]")
    if name != "a":
        return
    known, mask, kpath, mpath = inpaint_files(wd, "heun", np.random.default_rng(cfg["seed"] + 2), shape)
    s, _, _ = heun(["--inpaint", kpath, "--mask", mpath])
    x_ref, _ = reference_sample(model, shape, 1, 0.0, seed, known=known, mask=mask, sampler="heun")
    compare(f"{name} heun inpaint samples", s, x_ref, stats, HEUN_TOL)
    base = heun(["--no-clip", "--denoise"], count=7)[:2]
    for ranks, mb in ((2, 16), (3, 2)):
        got = heun(["--no-clip", "--denoise", "--micro-batch", mb], ranks=ranks, count=7)[:2]
        check(np.array_equal(got[0], base[0]) and np.array_equal(got[1], base[1]),
              f"heun: {ranks} ranks --micro-batch {mb} differs from 1 rank")
    print("  heun ranks/micro-batch: 1x16, 2x16, 3x2 bitwise identical")


def technique4_eps(sig_last, gamma, T):
    """NCSNv2's technique 4, independently: the eps minimising the paper's
    s_T^2/sigma^2 expression, by a log grid and a ternary search."""
    sl2 = sig_last ** 2

    def ratio(eps):
        r = 1.0 - eps / sl2
        k = 2.0 * eps / (sl2 - sl2 * r ** 2)
        return r ** (2 * T) * (gamma ** 2 - k) + k

    grid = np.exp(np.linspace(math.log(1e-10 * sl2), math.log(sl2 * (1 - 1e-9)), 20001))
    vals = np.array([ratio(e) for e in grid])
    j = int(np.argmin(vals))
    lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
    for _ in range(200):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, m2) if ratio(m1) < ratio(m2) else (m1, hi)
    return (lo + hi) / 2, ratio((lo + hi) / 2)


def check_auto(binary, wd, cfg):
    """(i) --step-lr auto: NCSNv2's technique 4 for --steps-each with
    gamma = sigma_{L-1}/sigma_L of the model's float32 sigmas; the samples
    are those of that step given by hand (which (a) checks against the
    reference)."""
    path = os.path.join(wd, "model_a.h5")
    n, H, W = cfg["N"], cfg["H"], cfg["W"]
    sig = np.asarray(cfg["sigmas"], dtype=np.float32).astype(np.float64)
    for T in (3, 20):
        out = os.path.join(wd, f"auto_{T}.h5")
        p = run(binary, ["sample", "--model", path, "--out", out, "--n", n, "--height", H, "--width", W,
                         "--steps-each", T, "--step-lr", "auto", "--seed", 5])
        with h5py.File(out, "r") as f:
            s, attrs = f["samples"][()], dict(f["samples"].attrs)
        eps, ratio = technique4_eps(sig[-1], sig[-2] / sig[-1], T)
        got = float(attrs["step_lr"])
        print(f"  T = {T}: --step-lr auto chose {got:.6g}, reference {eps:.6g} "
              f"(s_T^2/sigma^2 = {ratio:.6f}); step_lr_auto = {attrs['step_lr_auto']}")
        check(abs(got - eps) <= 1e-6 * eps, f"--step-lr auto, T = {T}: {got:.9g}, expected {eps:.9g}")
        check(attrs["step_lr_auto"] == 1 and attrs["sampler"] == b"als", f"attributes: {attrs}")
        check("technique 4" in p.stdout and f"{got:.6g}" in p.stdout, "the chosen step is not printed")
        given, _, gattrs = sample(binary, path, out, n, H, W, T, got, 5)
        check(np.array_equal(s, given) and gattrs["step_lr_auto"] == 0,
              f"--step-lr auto differs from --step-lr {got!r} given by hand")


def check_ranks(binary, wd, cfg):
    """(b) 1 rank vs 2 ranks vs micro-batches: bitwise identical."""
    path = os.path.join(wd, "model_a.h5")
    n, C, H, W, T, lr = 7, cfg["C"], cfg["H"], cfg["W"], 2, cfg["step_lr"]
    out = os.path.join(wd, "s_ranks.h5")
    rng = np.random.default_rng(5)
    kpath, mpath = os.path.join(wd, "known_ranks.h5"), os.path.join(wd, "mask_ranks.h5")
    write_x(kpath, "x", rng.uniform(-0.9, 0.9, (n, C, H, W)))
    write_x(mpath, "mask", (rng.uniform(size=(n, C, H, W)) < 0.5).astype(np.float32))
    cases = [("plain", []), ("inpaint", ["--inpaint", kpath, "--mask", mpath]),
             ("denoise no-clip normal", ["--denoise", "--no-clip", "--init-dist", "normal"])]
    bases = {}
    for label, extra in cases:
        runs = {}
        for ranks, mb in ((1, 16), (1, 2), (2, 3), (2, 1), (3, 16), (4, 1)):
            s, traj, _ = sample(binary, path, out, n, H, W, T, lr, 99,
                                list(extra) + ["--trajectory", "--micro-batch", mb], ranks=ranks)
            runs[(ranks, mb)] = (s, traj)
        base = bases[label] = runs[(1, 16)]
        for key, (s, traj) in runs.items():
            check(np.array_equal(s, base[0]) and np.array_equal(traj, base[1]),
                  f"{label}: {key[0]} rank(s) --micro-batch {key[1]} differs from 1 rank --micro-batch 16 "
                  f"(max diff {np.abs(s - base[0]).max():.2e})")
        print(f"  ranks/micro-batch ({label}): 1x16, 1x2, 2x3, 2x1, 3x16, 4x1 bitwise identical "
              f"(samples and trajectory; 7 samples split 2+2+3 and 1+2+2+2)")
    # --keep-weights: the kept transformed weights give the same bits; auto
    # keeps them when a rank's passes hold 1 sample, and says so.
    base = bases["plain"]
    for ranks, mb, keep in ((1, 16, "on"), (2, 1, "on"), (4, 1, "auto"), (1, 1, "off")):
        s, traj, _ = sample(binary, path, out, n, H, W, T, lr, 99,
                            ["--trajectory", "--micro-batch", mb, "--keep-weights", keep], ranks=ranks)
        check(np.array_equal(s, base[0]) and np.array_equal(traj, base[1]),
              f"--keep-weights {keep}, {ranks} rank(s) --micro-batch {mb} differs from the plain run "
              f"(max diff {np.abs(s - base[0]).max():.2e})")
    for mb, said in ((1, "kept for the run"), (2, "transformed again on every forward pass")):
        p = run(binary, ["sample", "--model", path, "--out", out, "--n", 2, "--image-size", 8, "--steps-each", 1,
                         "--micro-batch", mb])
        check(said in p.stdout, f"--keep-weights auto at --micro-batch {mb}: no line saying '{said}'")
    print("  --keep-weights on/auto/off: bitwise identical to the plain run; auto keeps them at 1 sample per pass")
    # Kept weights that would not fit: auto drops them and says so, on stops
    # (exit 2) naming the option. At nf 128 they are 196 MB against about
    # 60 MB for the rest of an 8x8 run, so a 200 MiB limit splits the two.
    big = os.path.join(wd, "model_nf128.h5")
    run(binary, ["init", "--out", big, "--in-channels", "1", "--nf", "128", "--num-classes", "2", "--sigmas", "1,0.5"])
    args = ["sample", "--model", big, "--out", out, "--n", 1, "--image-size", 8, "--steps-each", 1]
    limit = {"NCSN_MEMORY_LIMIT": "200M"}
    p = run(binary, args + ["--keep-weights", "auto"], extra_env=limit)
    check("keeping them would not fit in memory" in p.stdout,
          f"--keep-weights auto under a 200M limit: no line saying it dropped them: {p.stdout[-600:]}")
    p = run(binary, args + ["--keep-weights", "on"], expect=2, extra_env=limit)
    check("--keep-weights off" in p.stderr and "kept transformed weights" in p.stderr,
          f"--keep-weights on under a 200M limit: the message does not name the kept weights and the option: "
          f"{p.stderr[-600:]}")
    p = run(binary, args + ["--keep-weights", "auto"])
    check("kept for the run" in p.stdout, "--keep-weights auto without a limit: the weights were not kept")
    print("  --keep-weights under a memory limit: auto drops them and says so; on stops naming the option")
    # Fewer samples than ranks: some ranks hold none.
    for n_few, rank_counts in ((1, (1, 2, 4)), (2, (1, 3, 4))):
        got = [sample(binary, path, out, n_few, H, W, T, lr, 99, ["--trajectory"], ranks=r) for r in rank_counts]
        for r, g in zip(rank_counts[1:], got[1:]):
            check(np.array_equal(got[0][0], g[0]) and np.array_equal(got[0][1], g[1]),
                  f"--n {n_few}: {r} ranks differ from 1 rank")
        print(f"  --n {n_few} on {', '.join(map(str, rank_counts[1:]))} ranks (idle ranks) == 1 rank")


def check_clip_and_init(binary, wd, cfg):
    """(c) clip bounds with a large step; (d) the initial draws are philox_ref's."""
    path = os.path.join(wd, "model_a.h5")
    n, C, H, W = cfg["N"], cfg["C"], cfg["H"], cfg["W"]
    out = os.path.join(wd, "s_clip.h5")
    s, _, _ = sample(binary, path, out, n, H, W, 3, 0.05, 3)
    check(np.abs(s).max() <= 1.0 and np.isfinite(s).all(), "clip on: a sample leaves [-1, 1]")
    at_bound = float((np.abs(s) == 1.0).mean())
    s, _, _ = sample(binary, path, out, n, H, W, 3, 0.05, 3, ["--no-clip"])
    outside = float((np.abs(s) > 1.0).mean())
    print(f"  step-lr 0.05: clip on: all in [-1, 1] ({at_bound:.0%} at +-1); "
          f"--no-clip: {outside:.0%} outside")
    check(outside > 0.1, f"--no-clip with a large step: only {outside:.1%} of the values leave [-1, 1]")
    per = C * H * W
    for dist in ("uniform", "normal"):
        s, _, attrs = sample(binary, path, out, n, H, W, 1, 1e-30, 12345678901,
                             ["--no-clip", "--init-dist", dist])
        want = initial_state(n, per, 12345678901, dist).reshape(s.shape)
        d = float(np.abs(s - want).max())
        print(f"  --init-dist {dist}, seed 12345678901 (key words 0x{12345678901 & 0xFFFFFFFF:08x}, "
              f"0x{12345678901 >> 32:x}): max|x - philox_ref| = {d:.1e}")
        check(d <= 1e-6, f"--init-dist {dist}: initial state differs from philox_ref ({d:.2e})")
        check(attrs["init"] == dist.encode(), f"attribute init is {attrs['init']!r}")


def check_png(binary, wd):
    """(f) grids for 1 and 3 channels, the trajectory strip, /trajectory."""
    for name, n in (("a", 6), ("b", 5), ("a", 10)):
        cfg = CONFIGS[name]
        C, H, W, L = cfg["C"], cfg["H"], cfg["W"], cfg["L"]
        path = os.path.join(wd, f"model_{name}.h5")
        out = os.path.join(wd, f"png_{name}_{n}.h5")
        png = os.path.join(wd, f"grid_{name}_{n}.png")
        s, traj, _ = sample(binary, path, out, n, H, W, 2, cfg["step_lr"], 4,
                            ["--png", png, "--trajectory"])
        check(traj.shape == (L, n, C, H, W), f"/trajectory has shape {traj.shape}")
        check(np.array_equal(traj[-1], s), "/trajectory[L-1] differs from /samples")
        check_grid(png, s, math.ceil(math.sqrt(n)))
        strip = png[:-4] + "_trajectory.png"
        check(os.path.exists(strip), f"{strip} was not written")
        rows = min(n, 8)
        tiles = np.concatenate([np.concatenate([traj[:, r], s[r:r + 1]]) for r in range(rows)])
        check_grid(strip, tiles, L + 1)
    # The strip is named after the grid's stem; a name without ".png" keeps all of it.
    png = os.path.join(wd, "grid_nosuffix")
    s, traj, _ = sample(binary, os.path.join(wd, "model_a.h5"), os.path.join(wd, "png_nosuffix.h5"),
                        2, 8, 8, 1, 1e-3, 4, ["--png", png, "--trajectory"])
    check(os.path.exists(png + "_trajectory.png"),
          f"--png {png}: expected {png}_trajectory.png, found "
          f"{sorted(f for f in os.listdir(wd) if f.startswith('grid_'))}")
    check_grid(png, s, 2)
    check_grid(png + "_trajectory.png",
               np.concatenate([np.concatenate([traj[:, r], s[r:r + 1]]) for r in range(2)]), len(traj) + 1)
    # Without --trajectory there is no strip and no /trajectory.
    cfg = CONFIGS["a"]
    png = os.path.join(wd, "grid_plain.png")
    _, traj, _ = sample(binary, os.path.join(wd, "model_a.h5"), os.path.join(wd, "png_plain.h5"),
                        4, cfg["H"], cfg["W"], 1, cfg["step_lr"], 4, ["--png", png])
    check(traj is None, "/trajectory written without --trajectory")
    check(os.path.exists(png) and not os.path.exists(png[:-4] + "_trajectory.png"),
          "--png without --trajectory: expected the grid only")


def check_ema(binary, wd):
    """--ema on a real training checkpoint: the same as a model file holding
    the checkpoint's /ema weights; without --ema, its /model weights."""
    d = os.path.join(wd, "ema")
    os.makedirs(d, exist_ok=True)
    data = os.path.join(d, "data.h5")
    with h5py.File(data, "w") as f:
        f.create_dataset("images", data=np.random.default_rng(1).integers(0, 256, (16, 8, 8), dtype=np.uint8))
    run_dir = os.path.join(d, "run")
    run(binary, ["train", "--data", data, "--run-dir", run_dir, "--in-channels", 1, "--nf", 8,
                 "--num-classes", 4, "--sigmas", "1,0.5,0.25,0.1", "--steps", 4, "--batch", 4,
                 "--ema", 0.5, "--ckpt-every", 4, "--seed", 2])
    ckpts = sorted(f for f in os.listdir(run_dir) if f.startswith("ckpt-") and f.endswith(".h5"))
    check(ckpts, f"ncsn train wrote no ckpt-*.h5 in {run_dir}: {os.listdir(run_dir)}")
    ckpt = os.path.join(run_dir, ckpts[-1])
    files = {}
    for group in ("model", "ema"):
        files[group] = os.path.join(d, f"weights_{group}.h5")
        with h5py.File(ckpt, "r") as src, h5py.File(files[group], "w") as dst:
            check(group in src, f"{ckpt}: no /{group}")
            g = dst.create_group("model")
            for k, v in src["model"].attrs.items():
                g.attrs[k] = v
            g.create_dataset("sigmas", data=src["model/sigmas"][()])
            for k in src["model"]:
                if k != "sigmas":
                    g.create_dataset(k, data=src[group][k][()])
    args = (8, 8, 8, 2, 1e-3, 21, ["--trajectory"])
    out = os.path.join(d, "s.h5")
    s_ema, t_ema, attrs = sample(binary, ckpt, out, *args[:-1], args[-1] + ["--ema"])
    check(attrs["weights"] == b"ema", f"attribute weights is {attrs['weights']!r} with --ema")
    s_ref, t_ref, _ = sample(binary, files["ema"], out, *args)
    check(np.array_equal(s_ema, s_ref) and np.array_equal(t_ema, t_ref),
          "--ema differs from a model file holding the checkpoint's /ema weights")
    s_mod, _, attrs = sample(binary, ckpt, out, *args)
    check(attrs["weights"] == b"model", f"attribute weights is {attrs['weights']!r} without --ema")
    s_ref, _, _ = sample(binary, files["model"], out, *args)
    check(np.array_equal(s_mod, s_ref), "a checkpoint without --ema differs from its /model weights")
    check(not np.array_equal(s_mod, s_ema), "--ema gave the same samples as the /model weights")
    print(f"  {os.path.basename(ckpt)} of a 4-step run: --ema == its /ema weights, "
          f"default == its /model weights (bitwise)")


def check_errors(binary, wd):
    """(g) bad options and files: exit 2, one line naming the culprit, no output."""
    ed = os.path.join(wd, "errors")
    os.makedirs(ed, exist_ok=True)
    good = os.path.join(wd, "model_a.h5")
    nosig = os.path.join(ed, "nosigmas.h5")
    run(binary, ["init", "--out", nosig, "--in-channels", "1", "--nf", "8", "--num-classes", "4"])
    text = os.path.join(ed, "notes.txt")
    with open(text, "w") as f:
        f.write("not an HDF5 file\n")
    missing = os.path.join(ed, "missing.h5")
    bad_init = os.path.join(ed, "init_bad.h5")
    write_x(bad_init, "x", np.zeros((4, 1, 8, 9)))
    bad_n = os.path.join(ed, "init_badn.h5")
    write_x(bad_n, "x", np.zeros((3, 1, 8, 8)))
    known = os.path.join(ed, "known.h5")
    write_x(known, "x", np.zeros((4, 1, 8, 8)))
    bad_mask = os.path.join(ed, "mask_bad.h5")
    write_x(bad_mask, "mask", np.zeros((2, 1, 8, 8)))
    two = os.path.join(ed, "two_channels.h5")
    run(binary, ["init", "--out", two, "--in-channels", "2", "--nf", "8", "--num-classes", "4",
                 "--sigmas", "1,0.5,0.25,0.1"])
    no_x = os.path.join(ed, "no_x.h5")
    write_x(no_x, "y", np.zeros((4, 1, 8, 8)))
    one = os.path.join(ed, "one_level.h5")
    run(binary, ["init", "--out", one, "--in-channels", "1", "--nf", "8", "--num-classes", "1", "--sigmas", "1"])
    cas = ["--model", good, "--sampler", "cas"]

    base = ["--n", "4", "--image-size", "8", "--steps-each", "1"]
    cases = [
        ("missing --model", [], ["--model"]),
        ("model file missing", ["--model", missing], [missing]),
        ("model not HDF5", ["--model", text], [text]),
        ("model without sigmas", ["--model", nosig], [nosig, "sigmas"]),
        ("--ema without /ema", ["--model", good, "--ema"], [good, "ema"]),
        ("--init wrong image shape", ["--model", good, "--init", bad_init], [bad_init]),
        ("--init wrong count", ["--model", good, "--init", bad_n], [bad_n]),
        ("--init without /x", ["--model", good, "--init", no_x], [no_x]),
        ("--init file missing", ["--model", good, "--init", missing], [missing]),
        ("--inpaint without --mask", ["--model", good, "--inpaint", known], ["--inpaint", "--mask"]),
        ("--mask without --inpaint", ["--model", good, "--mask", bad_mask], ["--mask"]),
        ("--mask wrong count", ["--model", good, "--inpaint", known, "--mask", bad_mask], [bad_mask]),
        ("--init-dist bogus", ["--model", good, "--init-dist", "bogus"], ["--init-dist", "bogus"]),
        ("--keep-weights bogus", ["--model", good, "--keep-weights", "bogus"], ["--keep-weights", "bogus"]),
        ("--n 0", ["--model", good, "--n", "0"], ["--n"]),
        ("--steps-each 0", ["--model", good, "--steps-each", "0"], ["--steps-each"]),
        ("--step-lr -1", ["--model", good, "--step-lr", "-1"], ["--step-lr"]),
        ("--n not a number", ["--model", good, "--n", "many"], ["--n"]),
        ("unknown option", ["--model", good, "--bogus-option"], ["--bogus-option"]),
        ("--png with 2 channels", ["--model", two], ["--png"]),
        ("--sampler bogus", ["--model", good, "--sampler", "bogus"], ["--sampler", "bogus"]),
        ("--step-lr not a number", ["--model", good, "--step-lr", "fast"], ["--step-lr", "fast"]),
        ("--step-lr auto, one level", ["--model", one, "--step-lr", "auto"], ["--step-lr auto", "2 noise levels"]),
        ("cas: --steps-each 5", cas + ["--step-lr", "0.008", "--steps-each", "5"], ["--steps-each", "cas", "5"]),
        ("cas: --step-lr auto", cas + ["--step-lr", "auto"], ["--step-lr auto", "cas"]),
        ("cas: eta below the bound", cas + ["--step-lr", "0.001"], ["--sampler cas", "eta = step_lr/sigma_L^2 = 0.1,",
                                                                   "0.6 < eta <= 1", "(0.006, 0.01]"]),
        ("cas: eta above 1", cas + ["--step-lr", "0.02"], ["--sampler cas", "eta = step_lr/sigma_L^2 = 2,"]),
        ("heun: --steps-each 5", ["--model", good, "--sampler", "heun", "--steps-each", "5"], ["--steps-each", "heun"]),
        ("heun: --step-lr given", ["--model", good, "--sampler", "heun", "--step-lr", "1e-5"], ["--step-lr", "heun"]),
    ]
    for i, (label, args, names) in enumerate(cases):
        cd = os.path.join(ed, f"case{i}")
        os.makedirs(cd, exist_ok=True)
        out, png = os.path.join(cd, "out.h5"), os.path.join(cd, "out.png")
        p = run(binary, ["sample"] + base + args + ["--out", out, "--png", png], expect=None)
        # Environment warnings ("ncsn: warning: ...", e.g. about OpenBLAS's
        # kernels) are not part of the error message.
        lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("ncsn: warning:")]
        check(p.returncode == 2, f"{label}: exit {p.returncode}, expected 2 (stderr: {p.stderr.strip()})")
        check(len(lines) == 1, f"{label}: expected one line on stderr, got {len(lines)}:\n{p.stderr}")
        for nm in names:
            check(nm in lines[0], f"{label}: message does not name {nm!r}: {lines[0]}")
        left = os.listdir(cd)
        check(not left, f"{label}: left files behind: {left}")
        print(f"  {label:<28} exit 2: {lines[0]}")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2])
        return 2
    binary, wd = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    os.makedirs(wd, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.time()
    stats = []
    try:
        models = {}
        for name, cfg in CONFIGS.items():
            models[name] = make_model(os.path.join(wd, f"model_{name}.h5"), cfg)
        print("(a, c, d, e) against the float64 reference")
        for name, cfg in CONFIGS.items():
            check_reference(binary, wd, name, cfg, models[name], stats)
        print("(b) ranks and micro-batches")
        check_ranks(binary, wd, CONFIGS["a"])
        print("(c, d) clip bounds and initial draws")
        check_clip_and_init(binary, wd, CONFIGS["a"])
        print("(f) pictures and trajectory")
        check_png(binary, wd)
        print("(--ema) a training checkpoint")
        check_ema(binary, wd)
        print("(h) consistent annealed sampling (--sampler cas)")
        for name, cfg in CONFIGS.items():
            check_cas(binary, wd, name, cfg, models[name], stats)
        print("(j) Heun's deterministic sampler (--sampler heun)")
        for name, cfg in CONFIGS.items():
            check_heun(binary, wd, name, cfg, models[name], stats)
        print("(i) --step-lr auto (NCSNv2 technique 4)")
        check_auto(binary, wd, CONFIGS["a"])
        print("(g) bad options and files")
        check_errors(binary, wd)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    worst = max(stats, key=lambda s: s[1] / s[2])
    print(f"PASS ({len(stats)} reference comparisons, worst {worst[1]:.2e} in '{worst[0]}', "
          f"tolerance {worst[2]:g}; {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
