#!/usr/bin/python3
"""test_parity.py: the C network against the independent PyTorch reference.

Usage: /usr/bin/python3 tests/test_parity.py NCSN_BINARY WORKDIR

For each configuration below it builds the reference (tests/ref/ncsn_ref.py)
with random values in every parameter, writes the model and an input file
(/x, /labels, /noise) to WORKDIR, runs `NCSN_BINARY score` and
`NCSN_BINARY grad`, and compares with the reference computed in float64 from
the same float32 weights:

    score        ||s_c - s_ref|| / ||s_ref||             <= 1e-5
    loss         |l_c - l_ref| / |l_ref|                  <= 1e-5
    gradients    ||g_c - g_ref|| / ||g_ref|| per key      <= 1e-4
                 (keys whose gradient is zero in exact arithmetic: see
                 zero_grad_keys(); those need max|g_c| <= 1e-6 max(1, loss),
                 and refine4.msf.* must be exactly zero)

and the /grad key set must equal the reference's parameter keys. It also runs
`NCSN_BINARY init` with the defaults and checks the key set, shapes, parameter
count (12,471,555), attributes and the DESIGN initial values, and `init --norm
cin++` (keys, shapes, attribute, initial gamma and alpha ~ N(1, 0.02), beta 0).

Random draws come only from torch generators seeded here; the C side reads
everything from the files, so no generator has to match. Inputs are redrawn
(new seed) if a max-pool window holds a near-tie, where float32 and float64
could legitimately route the gradient differently (a kink).

NCSN_BINARY may also be tests/ref/ncsn_ref.py itself (run with this Python),
which checks this driver against the reference in float32.

Exit status: 0 pass, 1 failure (the message names the key), 77 skip (no torch
or h5py), 2 bad usage.
"""

import os
import subprocess
import sys

try:
    import numpy as np
    import torch
    import h5py
except ImportError as e:  # a missing optional tool is a skip, not a pass
    print(f"SKIP: test_parity needs numpy, torch and h5py for {sys.executable}: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import ncsn_ref as R  # noqa: E402

SCORE_RTOL = 1e-5
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4
ZERO_GRAD_ATOL = 1e-6     # times max(1, loss); float32 noise measured at ~2e-8 of the loss
# Near-tie threshold for max-pool windows, relative to the pooled tensor's
# spread. Measured: float32 drifts from float64 by up to about 1e-5 (same
# measure) at the CRP pooling inputs, and typical draws have smallest gaps of
# 1e-6 .. 1e-4. Over 60 draws PyTorch float32 never exceeded 3e-5 gradient
# error even with gaps of 1e-6, so this guard is a margin, not a necessity.
MIN_POOL_GAP = 3e-5
MAX_DRAWS = 50
RUN_TIMEOUT = 900         # seconds per binary invocation

CONFIGS = [
    dict(name="a", in_channels=3, nf=8, L=4, dilations=(1, 2, 4, 8), scale_by_sigma=True,
         N=3, H=8, W=8, labels=[0, 3, 1], sigma_range=(2.0, 0.1), seed=1001),
    dict(name="b", in_channels=1, nf=8, L=5, dilations=(1, 3, 2, 1), scale_by_sigma=False,
         N=2, H=10, W=7, labels=[4, 1], sigma_range=(1.0, 0.05), seed=2002),
    dict(name="c", in_channels=2, nf=8, L=3, dilations=(1, 2, 1, 2), scale_by_sigma=True,
         plane_head=True, head_floor=0.3, N=2, H=8, W=6, labels=[2, 0], sigma_range=(1.5, 0.2), seed=3003),
    dict(name="d", in_channels=3, nf=8, L=4, dilations=(1, 2, 1, 3), scale_by_sigma=True, norm="cin++",
         N=3, H=8, W=7, labels=[3, 0, 2], sigma_range=(2.0, 0.1), seed=4004),
    dict(name="e", in_channels=1, nf=8, L=4, dilations=(1, 2, 2, 1), scale_by_sigma=True,
         plane_head=True, head_sigma_data=0.5, N=3, H=8, W=8, labels=[0, 3, 1], sigma_range=(20.0, 0.05),
         seed=5005),
    dict(name="f", in_channels=2, nf=8, L=3, dilations=(1, 3, 1, 2), scale_by_sigma=True, norm="cin++",
         head_sigma_data=0.7, N=2, H=7, W=8, labels=[2, 0], sigma_range=(5.0, 0.1), seed=6006),
]


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# --------------------------------------------------------------------------
# Which gradients are zero in exact arithmetic
# --------------------------------------------------------------------------

def zero_grad_keys(keys, norm="cin"):
    """Keys whose loss gradient is exactly zero in exact arithmetic.

    Every conv bias except end_conv.bias. A bias adds a per-channel constant
    c to the conv's output map (the same c at every pixel, border included,
    since it is added after the convolution). Follow such a shift forward:

      - a CondInstanceNorm subtracts the per-(sample, channel) mean and divides
        by the standard deviation, so norm(t + c) = norm(t): the shift dies;
      - every conv, ELU and max-pool of the network takes its input from a
        norm (conv1/conv2 of an RCU, the CRP and MSF convs, end_conv), so a
        shift never reaches one of them except through a norm;
      - the only other consumers are sums: the RCU residual
        (RCU(t + c) = RCU(t) + c, since its branch starts with norm1), the
        CRP running sum (CRP(t + c) = CRP(t) + c: the chain starts with
        norms[0], and a bias of convs[i] shifts `out` and is removed by
        norms[i+1]), and the MSF sum, whose terms each start with a norm, so
        MSF removes shifts of its inputs;
      - so a shift travels along residual paths only, and every such path
        ends in a norm: at the MSF of refine3/2/1 (for begin_conv, the
        stages, refine4, refine3, refine2) or at end_norm (for refine1).

    So begin_conv.bias, every RCU's conv1/conv2 bias, every CRP and MSF conv
    bias have zero gradient; end_conv.bias feeds the output directly and does
    not. (The float64 reference confirms this: such gradients are ~1e-14
    while every other key's is O(1); run_config() checks it each time.)

    refine4.msf.* (its MSF is never executed) are zero too; those are checked
    for exact zeros separately (see unused_keys()).

    With norm="cin++" none: CondInstanceNormPlus passes on each channel's mean
    relative to the other channels' (alpha * mh), so a per-channel shift does
    not die at a norm, and every bias reaches the loss.
    """
    if norm == "cin++":
        return set()
    return {k for k in keys if k.endswith(".bias") and k != "end_conv.bias"}


def unused_keys(keys):
    """Parameters that take no part in the computation: refine4's MSF."""
    return {k for k in keys if k.startswith("refine4.msf.")}


# --------------------------------------------------------------------------
# Building a test case
# --------------------------------------------------------------------------

def randomize_(model, gen):
    """Random values in every parameter: conv weights randn / sqrt(fan_in),
    biases randn * 0.2 (nonzero), gamma 1 + 0.2 randn, (cin++) alpha
    1 + 0.3 randn, beta 0.3 randn."""
    nf = model.nf
    with torch.no_grad():
        for key, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if key.endswith("embed.weight"):
                b0 = p.shape[1] - nf                     # beta's first column
                r[:, :nf] = 1.0 + 0.2 * r[:, :nf]
                r[:, nf:b0] = 1.0 + 0.3 * r[:, nf:b0]     # alpha (cin++ only)
                r[:, b0:] = 0.3 * r[:, b0:]
            elif key.endswith(".bias"):
                r = 0.2 * r
            else:
                r = r / (p.shape[1] * 9) ** 0.5
            p.copy_(r.to(p.dtype))


def draw_case(cfg, seed):
    """Model (float32) and inputs (float32) for one configuration and seed."""
    gen = torch.Generator().manual_seed(seed)
    model = R.NCSNRef(cfg["in_channels"], cfg["nf"], cfg["L"], cfg["dilations"],
                      scale_by_sigma=cfg["scale_by_sigma"], plane_head=cfg.get("plane_head", False),
                      head_floor=cfg.get("head_floor", 0.05), norm=cfg.get("norm", "cin"),
                      head_sigma_data=cfg.get("head_sigma_data", 0.0),
                      sigmas=R.make_sigmas(*cfg["sigma_range"], cfg["L"]))
    randomize_(model, gen)
    shape = (cfg["N"], cfg["in_channels"], cfg["H"], cfg["W"])
    x = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).float()
    noise = torch.randn(shape, generator=gen, dtype=torch.float64).float()
    labels = torch.tensor(cfg["labels"], dtype=torch.int64)
    assert labels.shape == (cfg["N"],)
    return model, x, labels, noise


def pool_gap(model64, x64, labels, noise64):
    """Smallest max-pool near-tie gap over the score and the loss forward passes."""
    gaps = []
    model64.set_crp_gap_log(gaps)
    with torch.no_grad():
        model64(x64, labels)
        model64.dsm_loss(x64, labels, noise64)
    model64.set_crp_gap_log(None)
    return min(gaps)


def write_input(path, x, labels, noise):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x.numpy().astype(np.float32))
        f.create_dataset("labels", data=labels.numpy().astype(np.int64))
        f.create_dataset("noise", data=noise.numpy().astype(np.float32))


# --------------------------------------------------------------------------
# Running the binary
# --------------------------------------------------------------------------

def binary_cmd(binary):
    if binary.endswith(".py"):
        return [sys.executable, binary]
    return [binary]


def run(binary, args):
    for i, a in enumerate(args):  # never accept a stale output file
        if a == "--out" and os.path.exists(args[i + 1]):
            os.remove(args[i + 1])
    cmd = binary_cmd(binary) + args
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Failure(f"timed out after {RUN_TIMEOUT} s: {' '.join(cmd)}")
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise Failure(f"exit status {p.returncode}: {' '.join(cmd)}\n{tail}")


def rel_err(a, b):
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else np.linalg.norm(a)


# --------------------------------------------------------------------------
# One configuration
# --------------------------------------------------------------------------

def run_config(binary, workdir, cfg):
    name = cfg["name"]
    # Draw until no max-pool window holds a near-tie (see module docstring).
    for draw in range(MAX_DRAWS):
        seed = cfg["seed"] + 7919 * draw
        model, x, labels, noise = draw_case(cfg, seed)
        gap = pool_gap(model_copy(model).double(), x.double(), labels, noise.double())
        if gap >= MIN_POOL_GAP:
            break
    else:
        raise Failure(f"config {name}: no draw without max-pool near-ties in {MAX_DRAWS} tries")

    model_path = os.path.join(workdir, f"parity_{name}_model.h5")
    input_path = os.path.join(workdir, f"parity_{name}_input.h5")
    score_path = os.path.join(workdir, f"parity_{name}_score.h5")
    grad_path = os.path.join(workdir, f"parity_{name}_grad.h5")
    R.save_model_h5(model, model_path)
    write_input(input_path, x, labels, noise)

    # Reference in float64 from exactly the float32 values in the files.
    ref = R.load_model_h5(model_path).double()
    x64, labels, noise64 = R.read_input_h5(input_path, torch.float64)
    with torch.no_grad():
        s_ref = ref(x64, labels).numpy()
    loss_t = ref.dsm_loss(x64, labels, noise64)
    loss_t.backward()
    loss_ref = loss_t.item()
    g_ref = {k: R.grad_or_zeros(p).numpy() for k, p in ref.named_parameters()}
    keys = ref.param_keys()
    zero_keys = zero_grad_keys(keys, ref.norm)
    unused = unused_keys(keys)
    zero_tol = ZERO_GRAD_ATOL * max(1.0, abs(loss_ref))

    # The reference must agree with the analysis of zero_grad_keys(): else
    # the reasoning (or the reference) is wrong, and the test cannot judge.
    for k in keys:
        gmax = np.abs(g_ref[k]).max()
        if k in unused:
            check(gmax == 0, f"reference: unused key {k} has gradient {gmax:.3e}")
        elif k in zero_keys:
            check(gmax <= 1e-9 * max(1.0, abs(loss_ref)),
                  f"reference: {k} should have a zero gradient, has max {gmax:.3e}")
        else:
            check(gmax > 1e-6, f"reference: {k} has a vanishing gradient ({gmax:.3e}); "
                               "its relative error would mean nothing")

    # score
    run(binary, ["score", "--model", model_path, "--input", input_path, "--out", score_path])
    with h5py.File(score_path, "r") as f:
        check("score" in f, f"{score_path}: no dataset /score")
        d = f["score"]
        check(d.dtype == np.float32, f"{score_path}: /score is {d.dtype}, expected float32")
        check(d.shape == s_ref.shape, f"{score_path}: /score has shape {d.shape}, "
                                      f"expected {s_ref.shape}")
        s_c = d[()].astype(np.float64)
    check(np.isfinite(s_c).all(), f"config {name}: score has non-finite values")
    score_err = rel_err(s_c, s_ref)
    check(score_err <= SCORE_RTOL,
          f"config {name}: score relative error {score_err:.3e} > {SCORE_RTOL:g}")

    # loss and gradients
    run(binary, ["grad", "--model", model_path, "--input", input_path, "--out", grad_path])
    worst_rel, worst_rel_key = 0.0, None
    worst_zero, worst_zero_key = 0.0, None
    with h5py.File(grad_path, "r") as f:
        check("loss" in f, f"{grad_path}: no dataset /loss")
        check(f["loss"].shape == (), f"{grad_path}: /loss has shape {f['loss'].shape}, "
                                     "expected a scalar dataset")
        check(f["loss"].dtype == np.float64, f"{grad_path}: /loss is {f['loss'].dtype}, "
                                             "expected float64")
        loss_c = float(f["loss"][()])
        loss_err = abs(loss_c - loss_ref) / abs(loss_ref)
        check(loss_err <= LOSS_RTOL, f"config {name}: loss {loss_c!r} vs reference "
                                     f"{loss_ref!r}: relative error {loss_err:.3e} > {LOSS_RTOL:g}")

        check("grad" in f and isinstance(f["grad"], h5py.Group), f"{grad_path}: no group /grad")
        got = set(f["grad"].keys())
        missing = sorted(set(keys) - got)
        extra = sorted(got - set(keys))
        check(not missing, f"{grad_path}: /grad lacks {len(missing)} keys, first {missing[:3]}")
        check(not extra, f"{grad_path}: /grad has unknown members {extra[:3]}")

        for k in keys:
            d = f["grad"][k]
            check(isinstance(d, h5py.Dataset), f"{grad_path}: /grad/{k} is not a dataset")
            check(d.dtype == np.float32, f"{grad_path}: /grad/{k} is {d.dtype}, expected float32")
            check(d.shape == g_ref[k].shape, f"{grad_path}: /grad/{k} has shape {d.shape}, "
                                             f"expected {g_ref[k].shape}")
            g_c = d[()].astype(np.float64)
            check(np.isfinite(g_c).all(), f"config {name}: gradient {k} has non-finite values")
            if k in unused:
                check(not g_c.any(), f"config {name}: gradient {k} must be exactly zero "
                                     f"(refine4's MSF is never executed); max |g| "
                                     f"{np.abs(g_c).max():.3e}")
            elif k in zero_keys:
                gmax = np.abs(g_c).max()
                check(gmax <= zero_tol, f"config {name}: gradient {k} is zero in exact "
                                        f"arithmetic, but max |g| = {gmax:.3e} > {zero_tol:.3e}")
                if gmax >= worst_zero:
                    worst_zero, worst_zero_key = gmax, k
            else:
                e = rel_err(g_c, g_ref[k])
                check(e <= GRAD_RTOL, f"config {name}: gradient {k}: relative error "
                                      f"{e:.3e} > {GRAD_RTOL:g}")
                if e >= worst_rel:
                    worst_rel, worst_rel_key = e, k

    print(f"config {name}: C={cfg['in_channels']} nf={cfg['nf']} L={cfg['L']} "
          f"dil={','.join(map(str, cfg['dilations']))} scale_by_sigma={int(cfg['scale_by_sigma'])} "
          f"plane_head={int(cfg.get('plane_head', False))} head_sigma_data={cfg.get('head_sigma_data', 0)} "
          f"norm={cfg.get('norm', 'cin')} "
          f"N={cfg['N']} HxW={cfg['H']}x{cfg['W']} (seed {seed}, pool gap {gap:.1e}): "
          f"score rel {score_err:.2e}, loss rel {loss_err:.2e} (loss {loss_ref:.6g}), "
          f"worst grad rel {worst_rel:.2e} [{worst_rel_key}], "
          f"worst zero-grad |g| {worst_zero:.2e} [{worst_zero_key}], {len(keys)} keys ok")


def model_copy(model):
    """A deep copy (float32) of a reference model, weights and sigmas included."""
    m = R.NCSNRef(model.in_channels, model.nf, model.num_classes, model.dilations,
                  scale_by_sigma=model.scale_by_sigma, plane_head=model.plane_head,
                  head_floor=model.head_floor, norm=model.norm, head_sigma_data=model.head_sigma_data)
    m.load_state_dict(model.state_dict())
    return m


# --------------------------------------------------------------------------
# `init` with the defaults
# --------------------------------------------------------------------------

def check_default_init(binary, workdir):
    path = os.path.join(workdir, "default.h5")
    run(binary, ["init", "--out", path])
    ref = R.NCSNRef()
    shapes = {k: tuple(p.shape) for k, p in ref.named_parameters()}
    with h5py.File(path, "r") as f:
        check("model" in f, f"{path}: no group /model")
        g = f["model"]
        got = {k for k in g.keys() if k != "sigmas"}
        missing = sorted(set(shapes) - got)
        extra = sorted(got - set(shapes))
        check(not missing, f"{path}: /model lacks {len(missing)} keys, first {missing[:3]}")
        check(not extra, f"{path}: /model has unknown members {extra[:3]}")

        expect_attrs = dict(in_channels=3, nf=128, num_classes=10, dilations=[1, 2, 4, 8],
                            scale_by_sigma=1, plane_head=0, head_floor=0.05, head_sigma_data=0.0,
                            format_version=1)
        for a, v in expect_attrs.items():
            check(a in g.attrs, f"{path}: /model has no attribute {a}")
            got_v = np.asarray(g.attrs[a]).reshape(-1).tolist()
            check(got_v == np.asarray(v).reshape(-1).tolist(),
                  f"{path}: /model attribute {a} = {got_v}, expected {v}")
        check(attr_str(g, "norm") == "cin", f"{path}: /model attribute norm is {attr_str(g, 'norm')!r}, "
                                            "expected 'cin'")

        count = 0
        for k, shape in shapes.items():
            d = g[k]
            check(isinstance(d, h5py.Dataset), f"{path}: /model/{k} is not a dataset")
            check(d.shape == shape, f"{path}: /model/{k} has shape {d.shape}, expected {shape}")
            check(d.dtype == np.float32, f"{path}: /model/{k} is {d.dtype}, expected float32")
            count += int(np.prod(shape))
            check_initial_values(path, k, d[()])
        check(count == R.DEFAULT_PARAM_COUNT,
              f"{path}: {count:,} parameters, expected {R.DEFAULT_PARAM_COUNT:,}")
        if "sigmas" in g:  # DESIGN: init without noise-level options writes none
            s = np.asarray(g["sigmas"][()])
            check(s.shape == (10,) and (s > 0).all() and (np.diff(s) < 0).all(),
                  f"{path}: /model/sigmas must be 10 positive descending values, got {s}")
    R.load_model_h5(path)  # the reference reads the C file as well
    print(f"init defaults: {len(shapes)} keys, {count:,} parameters, shapes, attributes "
          f"and initial values ok")


def attr_str(g, name):
    v = g.attrs.get(name)
    return v.decode() if isinstance(v, bytes) else v


def check_cinpp_init(binary, workdir):
    """`init --norm cin++`: the reference's keys and shapes (embed [L, 3 nf]),
    attribute norm, convs and biases as DESIGN, and embed columns: gamma and
    alpha ~ N(1, 0.02), beta 0 (pooled over every norm layer)."""
    path = os.path.join(workdir, "cinpp.h5")
    nf, L = 32, 10
    run(binary, ["init", "--out", path, "--norm", "cin++", "--nf", str(nf), "--seed", "3"])
    ref = R.NCSNRef(nf=nf, num_classes=L, norm="cin++")
    shapes = {k: tuple(p.shape) for k, p in ref.named_parameters()}
    scale = []
    with h5py.File(path, "r") as f:
        g = f["model"]
        check(attr_str(g, "norm") == "cin++", f"{path}: /model attribute norm is {attr_str(g, 'norm')!r}, "
                                              "expected 'cin++'")
        got = {k for k in g.keys() if k != "sigmas"}
        check(got == set(shapes), f"{path}: /model keys differ from the reference's "
                                  f"({sorted(got ^ set(shapes))[:3]})")
        for k, shape in shapes.items():
            a = g[k][()]
            check(a.shape == shape, f"{path}: /model/{k} has shape {a.shape}, expected {shape}")
            if k.endswith("embed.weight"):
                check((a[:, 2 * nf:] == 0).all(), f"{path}: /model/{k}: initial beta must be 0")
                scale.append(a[:, :2 * nf].astype(np.float64).reshape(-1))
            else:
                check_initial_values(path, k, a)
    scale = np.concatenate(scale)
    mean, sd = scale.mean(), scale.std()
    check(abs(mean - 1) < 1e-3 and abs(sd / 0.02 - 1) < 0.03 and np.abs(scale - 1).max() < 0.02 * 7,
          f"{path}: initial gamma and alpha: mean {mean:.5f}, sd {sd:.5f} over {scale.size} values, "
          "expected N(1, 0.02)")
    back = R.load_model_h5(path)  # the reference reads it as cin++
    check(back.norm == "cin++", f"{path}: the reference reads norm {back.norm!r}")
    print(f"init --norm cin++: {len(shapes)} keys, shapes and attribute ok; gamma and alpha "
          f"mean {mean:.4f} sd {sd:.4f} over {scale.size} values, beta 0")


def check_initial_values(path, key, a):
    """DESIGN section 1: gamma 1, beta 0, biases 0, conv weights Xavier-uniform
    U(-b, b) with b = sqrt(6 / (9 Cin + 9 Cout))."""
    if key.endswith("embed.weight"):
        nf = a.shape[1] // 2
        check((a[:, :nf] == 1).all() and (a[:, nf:] == 0).all(),
              f"{path}: /model/{key}: initial gamma must be 1 and beta 0")
    elif key.endswith(".bias"):
        check((a == 0).all(), f"{path}: /model/{key}: initial bias must be 0")
    else:
        cout, cin = a.shape[0], a.shape[1]
        b = (6.0 / (9 * cin + 9 * cout)) ** 0.5
        check(np.abs(a).max() <= b * (1 + 1e-6),
              f"{path}: /model/{key}: |w| up to {np.abs(a).max():.4g} exceeds the Xavier "
              f"bound {b:.4g}")
        if a.size >= 10000:  # U(-b, b) has standard deviation b / sqrt(3)
            sd = float(a.astype(np.float64).std())
            check(abs(sd / (b / 3 ** 0.5) - 1) < 0.05,
                  f"{path}: /model/{key}: standard deviation {sd:.4g}, Xavier-uniform "
                  f"gives {b / 3 ** 0.5:.4g}")


# --------------------------------------------------------------------------

def main(argv):
    if len(argv) != 3:
        print("usage: test_parity.py NCSN_BINARY WORKDIR", file=sys.stderr)
        return 2
    binary, workdir = argv[1], argv[2]
    if not os.path.exists(binary):
        print(f"FAIL: no binary {binary}", file=sys.stderr)
        return 1
    os.makedirs(workdir, exist_ok=True)
    torch.set_num_threads(1)
    try:
        for cfg in CONFIGS:
            run_config(binary, workdir, cfg)
        check_default_init(binary, workdir)
        check_cinpp_init(binary, workdir)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print("parity: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
