"""ncsn_ref.py: an independent PyTorch reference of the NCSN score network.

This is the network of DESIGN.md section 1 and the loss of section 2, written
directly from the design (not from the C code), so that the C trainer can be
checked against it: weights, inputs, labels and noise go through HDF5 files
(section 4), so no random generator has to match.

Its state_dict keys are the project's parameter names. Module tree, in
registration order (which is also the order of param_keys()):

    begin_conv                                  nn.Conv2d C -> nf, 3x3, pad 1
    stage1 .. stage4                            RCUBlock, dilations[0..3]
    refine4, refine3, refine2, refine1          RefineBlock (1, 2, 2, 2 inputs)
    end_norm                                    CondInstanceNorm(nf) (or ...Plus)
    end_conv                                    nn.Conv2d nf -> C, 3x3, pad 1

    RCUBlock:    units.0, units.1               (RCU)
    RCU:         norm1, conv1, norm2, conv2     (conv = Conv3x3 wrapper: .conv)
    RefineBlock: rcu_in.<i> (RCUBlock per input), msf, crp, rcu_out (RCUBlock)
    MSF:         norms.<i>, convs.<i>           (plain nn.Conv2d), one per input
    CRP:         norms.0..3, convs.0..3         (plain nn.Conv2d)
    CondInstanceNorm: embed.weight [L, 2*nf]    (gamma | beta)
    CondInstanceNormPlus: embed.weight [L, 3*nf] (gamma | alpha | beta), with norm="cin++"

Assumption (DESIGN.md only says "the stage's dilation" for RCUs): the RCUs
inside the refine blocks (rcu_in, rcu_out) use dilation 1, like every other
convolution of the refine blocks. Only stage1..stage4 use `dilations`.

refine4 has a single input, so its MSF (1 norm, 1 conv) exists only so that
the parameter set equals the seed's; it is never executed and its gradient is
exactly zero. The noise levels are the buffer `sigmas` [L]; a model without
sigmas holds NaN there, and anything that needs them raises an error.

Everything works in float64 too: model.double() converts weights and sigmas.

Run as a script it also offers a few commands (see --help): `selftest`
(parameter count, HDF5 round trip, gradcheck of the loss in float64), and
`init`, `score`, `grad` with the same files as the C binary's commands, so the
parity driver can be checked against the reference itself.
"""

import argparse
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_EPS = 1e-5
FORMAT_VERSION = 1
DEFAULT_PARAM_COUNT = 12_471_555  # C=3, nf=128, L=10 (DESIGN.md section 1)


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------

def init_conv_(conv):
    """DESIGN init: Xavier-uniform U(-b, b), b = sqrt(6 / (9 Cin + 9 Cout)); bias 0."""
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)


def make_conv(cin, cout, dilation=1):
    """3x3 conv, stride 1, padding = dilation, with bias: spatial size is kept."""
    conv = nn.Conv2d(cin, cout, 3, stride=1, padding=dilation, dilation=dilation, bias=True)
    init_conv_(conv)
    return conv


class CondInstanceNorm(nn.Module):
    """Instance norm whose affine transform is chosen by the noise label.

    For each sample n and channel c: mean and biased variance over H x W,
    xhat = (x - mean) / sqrt(var + 1e-5), out = gamma[y_n, c] xhat + beta[y_n, c].
    The only parameter is embed.weight [L, 2 nf]: gamma = [:, :nf], beta = [:, nf:].
    """

    def __init__(self, nf, num_classes):
        super().__init__()
        self.nf = nf
        self.embed = nn.Embedding(num_classes, 2 * nf)
        with torch.no_grad():
            self.embed.weight[:, :nf].fill_(1.0)
            self.embed.weight[:, nf:].zero_()

    def forward(self, x, y):
        # x: [N, nf, H, W], y: [N] int64
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        xhat = (x - mean) / torch.sqrt(var + NORM_EPS)
        gb = self.embed(y)                              # [N, 2 nf]
        gamma = gb[:, :self.nf].reshape(-1, self.nf, 1, 1)
        beta = gb[:, self.nf:].reshape(-1, self.nf, 1, 1)
        return gamma * xhat + beta


class CondInstanceNormPlus(nn.Module):
    """Conditional instance norm++ (the NCSN paper's InstanceNorm++), norm="cin++".

    CondInstanceNorm plus where each channel's mean lies among the sample's
    channel means mu [N, nf]: mh = (mu - mean_c mu) / sqrt(var_c mu + 1e-5),
    with the unbiased variance over the channels (torch.var's default);
    out = gamma[y, c] (xhat + alpha[y, c] mh) + beta[y, c]. embed.weight
    [L, 3 nf] = gamma | alpha | beta; initially gamma, alpha ~ N(1, 0.02),
    beta = 0.
    """

    def __init__(self, nf, num_classes):
        super().__init__()
        self.nf = nf
        self.embed = nn.Embedding(num_classes, 3 * nf)
        with torch.no_grad():
            self.embed.weight[:, :2 * nf].normal_(1.0, 0.02)
            self.embed.weight[:, 2 * nf:].zero_()

    def forward(self, x, y):
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        xhat = (x - mean) / torch.sqrt(var + NORM_EPS)
        mu = mean.flatten(1)                            # [N, nf]
        mh = (mu - mu.mean(dim=1, keepdim=True)) / torch.sqrt(mu.var(dim=1, keepdim=True) + NORM_EPS)
        gamma, alpha, beta = (t.reshape(-1, self.nf, 1, 1) for t in self.embed(y).chunk(3, dim=1))
        return gamma * (xhat + alpha * mh.reshape(-1, self.nf, 1, 1)) + beta


NORMS = {"cin": CondInstanceNorm, "cin++": CondInstanceNormPlus}


class Conv3x3(nn.Module):
    """The dilated 3x3 conv of an RCU; wraps the conv as `.conv` (key names)."""

    def __init__(self, cin, cout, dilation):
        super().__init__()
        self.conv = make_conv(cin, cout, dilation)

    def forward(self, x):
        return self.conv(x)


class RCU(nn.Module):
    """RCU(x) = x + conv2(ELU(norm2(conv1(ELU(norm1(x))))))."""

    def __init__(self, nf, num_classes, dilation, norm="cin"):
        super().__init__()
        self.norm1 = NORMS[norm](nf, num_classes)
        self.conv1 = Conv3x3(nf, nf, dilation)
        self.norm2 = NORMS[norm](nf, num_classes)
        self.conv2 = Conv3x3(nf, nf, dilation)

    def forward(self, x, y):
        h = self.conv1(F.elu(self.norm1(x, y)))
        h = self.conv2(F.elu(self.norm2(h, y)))
        return x + h


class RCUBlock(nn.Module):
    """Two RCUs in sequence: units.0, units.1."""

    def __init__(self, nf, num_classes, dilation, n_units=2, norm="cin"):
        super().__init__()
        self.units = nn.ModuleList([RCU(nf, num_classes, dilation, norm) for _ in range(n_units)])

    def forward(self, x, y):
        for unit in self.units:
            x = unit(x, y)
        return x


class MSF(nn.Module):
    """Multi-resolution fusion: sum_i convs[i](ELU(norms[i](h_i)))."""

    def __init__(self, nf, num_classes, n_inputs, norm="cin"):
        super().__init__()
        self.norms = nn.ModuleList([NORMS[norm](nf, num_classes) for _ in range(n_inputs)])
        self.convs = nn.ModuleList([make_conv(nf, nf) for _ in range(n_inputs)])

    def forward(self, hs, y):
        assert len(hs) == len(self.convs)
        out = None
        for h, norm, conv in zip(hs, self.norms, self.convs):
            t = conv(F.elu(norm(h, y)))
            out = t if out is None else out + t
        return out


class CRP(nn.Module):
    """Chained residual pooling, 4 stages:
    h = x; out = x; for i: h = convs[i](maxpool5(ELU(norms[i](h)))); out += h.
    maxpool5 = 5x5, stride 1, padding 2; padded positions never win.
    """

    def __init__(self, nf, num_classes, n_stages=4, norm="cin"):
        super().__init__()
        self.norms = nn.ModuleList([NORMS[norm](nf, num_classes) for _ in range(n_stages)])
        self.convs = nn.ModuleList([make_conv(nf, nf) for _ in range(n_stages)])
        # When set to a list, forward() appends the smallest gap between the
        # two largest values of any pooling window (see maxpool_min_gap).
        self.gap_log = None

    def forward(self, x, y):
        h = x
        out = x
        for norm, conv in zip(self.norms, self.convs):
            a = F.elu(norm(h, y))
            if self.gap_log is not None:
                self.gap_log.append(maxpool_min_gap(a))
            h = conv(F.max_pool2d(a, kernel_size=5, stride=1, padding=2))
            out = out + h
        return out


def maxpool_min_gap(a, tie_tol=1e-10):
    """Near-tie measure of maxpool5 on a [N, C, H, W]: the smallest difference,
    relative to the tensor's spread, between a window's maximum and any other
    element of that window that is not an exact tie.

    A small gap is a kink: float32 and float64 may route the pooling gradient
    to different elements. Exact ties (relative difference <= tie_tol) are
    ignored: they arise structurally (a conv over a plateau of the previous
    pooling output gives equal values), and both routings then give the same
    parameter gradient, since the tied values are the same function of the
    parameters and their inputs pool back to the same maxima.
    """
    a = a.detach().double()
    n, c, hh, ww = a.shape
    scale = a.std().item() + 1e-30
    padded = F.pad(a, (2, 2, 2, 2), value=-math.inf)
    cols = F.unfold(padded.reshape(n * c, 1, hh + 4, ww + 4), kernel_size=5)  # [NC, 25, HW]
    top = cols.max(dim=1, keepdim=True).values
    d = (top - cols) / scale                     # >= 0; inf at padded positions
    d[d <= tie_tol] = math.inf                   # the maximum itself and exact ties
    return d.min().item()


class RefineBlock(nn.Module):
    """h_i = rcu_in[i](x_i); h = h_0 or MSF(h_0, h_1); h = CRP(h); rcu_out(h)."""

    def __init__(self, nf, num_classes, n_inputs, norm="cin"):
        super().__init__()
        self.rcu_in = nn.ModuleList([RCUBlock(nf, num_classes, 1, norm=norm) for _ in range(n_inputs)])
        self.msf = MSF(nf, num_classes, n_inputs, norm)   # refine4: 1 norm + 1 conv, unused
        self.crp = CRP(nf, num_classes, norm=norm)
        self.rcu_out = RCUBlock(nf, num_classes, 1, norm=norm)

    def forward(self, xs, y):
        assert len(xs) == len(self.rcu_in)
        hs = [rcu(x, y) for rcu, x in zip(self.rcu_in, xs)]
        h = hs[0] if len(hs) == 1 else self.msf(hs, y)
        h = self.crp(h, y)
        return self.rcu_out(h, y)


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------

class NCSNRef(nn.Module):
    """The NCSN score network s(x, y) of DESIGN.md section 1."""

    def __init__(self, in_channels=3, nf=128, num_classes=10, dilations=(1, 2, 4, 8),
                 scale_by_sigma=True, sigmas=None, plane_head=False, head_floor=0.05, norm="cin",
                 head_sigma_data=0.0):
        super().__init__()
        dilations = tuple(int(d) for d in dilations)
        if len(dilations) != 4 or min(dilations) < 1:
            raise ValueError(f"dilations must be four positive integers, got {dilations}")
        self.in_channels = int(in_channels)
        self.nf = int(nf)
        self.num_classes = int(num_classes)
        self.dilations = dilations
        self.scale_by_sigma = bool(scale_by_sigma)
        self.plane_head = bool(plane_head)
        self.head_floor = float(head_floor)
        self.head_sigma_data = float(head_sigma_data)  # 0: off
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        self.norm = norm

        # Buffer, not a parameter. NaN means "not set".
        self.register_buffer("sigmas", torch.full((self.num_classes,), float("nan")))
        if sigmas is not None:
            self.set_sigmas(sigmas)

        L = self.num_classes
        self.begin_conv = make_conv(self.in_channels, nf)
        self.stage1 = RCUBlock(nf, L, dilations[0], norm=norm)
        self.stage2 = RCUBlock(nf, L, dilations[1], norm=norm)
        self.stage3 = RCUBlock(nf, L, dilations[2], norm=norm)
        self.stage4 = RCUBlock(nf, L, dilations[3], norm=norm)
        self.refine4 = RefineBlock(nf, L, 1, norm)
        self.refine3 = RefineBlock(nf, L, 2, norm)
        self.refine2 = RefineBlock(nf, L, 2, norm)
        self.refine1 = RefineBlock(nf, L, 2, norm)
        self.end_norm = NORMS[norm](nf, L)
        self.end_conv = make_conv(nf, self.in_channels)

    # -- noise levels --------------------------------------------------------

    def set_sigmas(self, sigmas):
        s = torch.as_tensor(np.asarray(sigmas, dtype=np.float64)).to(self.sigmas.dtype)
        if s.shape != (self.num_classes,):
            raise ValueError(f"sigmas must have {self.num_classes} values, got {tuple(s.shape)}")
        if not bool((s > 0).all()) or not bool((s[1:] < s[:-1]).all()):
            raise ValueError("sigmas must be positive and strictly descending")
        with torch.no_grad():
            self.sigmas.copy_(s)

    def has_sigmas(self):
        return not bool(torch.isnan(self.sigmas).any())

    def _need_sigmas(self):
        if not self.has_sigmas():
            raise RuntimeError("this model has no noise levels (sigmas not set)")

    # -- forward and loss ----------------------------------------------------

    def forward(self, x, y):
        """x: [N, C, H, W], y: [N] int64 labels -> score [N, C, H, W]."""
        h = self.begin_conv(x)
        h1 = self.stage1(h, y)
        h2 = self.stage2(h1, y)
        h3 = self.stage3(h2, y)
        h4 = self.stage4(h3, y)
        r4 = self.refine4([h4], y)
        r3 = self.refine3([h3, r4], y)
        r2 = self.refine2([h2, r3], y)
        r1 = self.refine1([h1, r2], y)
        out = self.end_conv(F.elu(self.end_norm(r1, y)))
        k = 1.0
        if self.scale_by_sigma or self.plane_head:
            self._need_sigmas()
        if self.scale_by_sigma:
            k = 1.0 / self.sigmas[y].reshape(-1, 1, 1, 1)
        sd = self.head_sigma_data
        if sd > 0:  # src/head.c: the preconditioned output
            self._need_sigmas()
            k = k * sd / (self.sigmas[y].reshape(-1, 1, 1, 1) ** 2 + sd * sd).sqrt()
        if not self.plane_head:
            return out * k
        # src/head.c: in the plane of each channel's mean and centred
        # pattern u of x, the output predicts the clean image
        d2 = self.sigmas[y].reshape(-1, 1, 1, 1) ** 2 + self.head_floor ** 2
        xc = x - x.mean(dim=(2, 3), keepdim=True)
        r = xc.flatten(2).norm(dim=2)[..., None, None]
        u = torch.where(r > 0, xc / r.clamp_min(1e-30), torch.zeros_like(xc))
        par = out.mean(dim=(2, 3), keepdim=True) + (out * u).sum(dim=(2, 3), keepdim=True) * u
        return k * (out - par) + (par - x) / d2

    def dsm_loss(self, x, labels, noise):
        """DESIGN section 2 with given labels and noise z:
        xt = x + sigmas[y] z; loss = (1/N) sum_n sum_chw (sigmas[y_n] s(xt, y)_n + z_n)^2.
        """
        self._need_sigmas()
        sig = self.sigmas[labels].reshape(-1, 1, 1, 1)
        xt = x + sig * noise
        r = sig * self(xt, labels) + noise
        weight = (sig * sig + self.head_sigma_data ** 2) / self.head_sigma_data ** 2 \
            if self.head_sigma_data > 0 else 1.0
        return (weight * r * r).sum() / x.shape[0]

    # -- parameter table -----------------------------------------------------

    def param_keys(self):
        """Parameter keys in registration order (state_dict order, no buffers)."""
        return [k for k, _ in self.named_parameters()]

    def param_count(self):
        return sum(p.numel() for p in self.parameters())

    def set_crp_gap_log(self, log):
        """Route every CRP's near-tie measurements into `log` (None: off)."""
        for m in self.modules():
            if isinstance(m, CRP):
                m.gap_log = log


def grad_or_zeros(p):
    """p.grad, or zeros when p took no part in the graph (refine4.msf.*)."""
    return p.grad.detach() if p.grad is not None else torch.zeros_like(p).detach()


def make_sigmas(begin, end, L):
    """exp(linspace(log begin, log end, L)) in double, stored as float32."""
    if not (begin > end > 0) or L < 2:
        raise ValueError("make_sigmas needs begin > end > 0 and L >= 2")
    return np.exp(np.linspace(math.log(begin), math.log(end), L)).astype(np.float32)


# --------------------------------------------------------------------------
# HDF5 model files (DESIGN.md section 4)
# --------------------------------------------------------------------------

def save_model_h5(model, path):
    """Write /model: one float32 dataset per parameter key (PyTorch shape), plus
    /model/sigmas when set; attributes in_channels, nf, num_classes,
    dilations int[4], scale_by_sigma 0/1, plane_head, head_floor, head_sigma_data, norm
    ("cin" or "cin++"), format_version."""
    import h5py
    with h5py.File(path, "w") as f:
        g = f.create_group("model")
        g.attrs["in_channels"] = np.int32(model.in_channels)
        g.attrs["nf"] = np.int32(model.nf)
        g.attrs["num_classes"] = np.int32(model.num_classes)
        g.attrs["dilations"] = np.asarray(model.dilations, dtype=np.int32)
        g.attrs["scale_by_sigma"] = np.int32(1 if model.scale_by_sigma else 0)
        g.attrs["plane_head"] = np.int32(1 if model.plane_head else 0)
        g.attrs["head_floor"] = np.float64(model.head_floor)
        g.attrs["head_sigma_data"] = np.float64(model.head_sigma_data)
        g.attrs["norm"] = model.norm
        g.attrs["format_version"] = np.int32(FORMAT_VERSION)
        for key, p in model.named_parameters():
            g.create_dataset(key, data=p.detach().cpu().numpy().astype(np.float32))
        if model.has_sigmas():
            g.create_dataset("sigmas", data=model.sigmas.detach().cpu().numpy().astype(np.float32))


def load_model_h5(path):
    """Build an NCSNRef (float32) from the /model group of an HDF5 file.
    The file must hold exactly the parameter keys (plus optional sigmas)."""
    import h5py
    with h5py.File(path, "r") as f:
        if "model" not in f:
            raise ValueError(f"{path}: no group /model")
        g = f["model"]
        for a in ("in_channels", "nf", "num_classes", "dilations", "scale_by_sigma"):
            if a not in g.attrs:
                raise ValueError(f"{path}: /model has no attribute '{a}'")
        dil = np.asarray(g.attrs["dilations"]).reshape(-1)
        norm = g.attrs.get("norm", "cin")                # absent: cin
        norm = norm.decode() if isinstance(norm, bytes) else str(norm)
        model = NCSNRef(in_channels=int(g.attrs["in_channels"]), nf=int(g.attrs["nf"]),
                        num_classes=int(g.attrs["num_classes"]),
                        dilations=tuple(int(d) for d in dil),
                        scale_by_sigma=bool(int(g.attrs["scale_by_sigma"])),
                        plane_head=bool(int(g.attrs.get("plane_head", 0))),
                        head_floor=float(g.attrs.get("head_floor", 0.05)), norm=norm,
                        head_sigma_data=float(g.attrs.get("head_sigma_data", 0.0)))
        keys = set(model.param_keys())
        names = set(g.keys())
        missing = sorted(keys - names)
        extra = sorted(names - keys - {"sigmas"})
        if missing:
            raise ValueError(f"{path}: /model lacks datasets {missing[:5]} ({len(missing)} in all)")
        if extra:
            raise ValueError(f"{path}: /model has unknown datasets {extra[:5]}")
        with torch.no_grad():
            for key, p in model.named_parameters():
                a = np.asarray(g[key][()])
                if a.shape != tuple(p.shape):
                    raise ValueError(f"{path}: /model/{key} has shape {a.shape}, "
                                     f"expected {tuple(p.shape)}")
                p.copy_(torch.from_numpy(a.astype(np.float32)))
            if "sigmas" in g:
                model.set_sigmas(np.asarray(g["sigmas"][()], dtype=np.float32))
    return model


def read_input_h5(path, dtype):
    """Read /x, /labels and (if present) /noise of a score/grad input file."""
    import h5py
    with h5py.File(path, "r") as f:
        x = torch.from_numpy(np.asarray(f["x"][()], dtype=np.float32)).to(dtype)
        labels = torch.from_numpy(np.asarray(f["labels"][()]).astype(np.int64))
        noise = None
        if "noise" in f:
            noise = torch.from_numpy(np.asarray(f["noise"][()], dtype=np.float32)).to(dtype)
    return x, labels, noise


# --------------------------------------------------------------------------
# Command line: the reference as a stand-in binary, and its self test
# --------------------------------------------------------------------------

def cmd_init(args):
    torch.manual_seed(args.seed)
    model = NCSNRef(args.in_channels, args.nf, args.num_classes,
                    [int(d) for d in args.dilations.split(",")],
                    scale_by_sigma=not args.no_scale_by_sigma, norm=args.norm)
    if args.sigmas:
        model.set_sigmas([float(s) for s in args.sigmas.split(",")])
    elif args.sigma_begin is not None:
        model.set_sigmas(make_sigmas(args.sigma_begin, args.sigma_end, args.num_classes))
    save_model_h5(model, args.out)
    return 0


def cmd_score(args):
    import h5py
    dtype = torch.float64 if args.double else torch.float32
    model = load_model_h5(args.model).to(dtype)
    x, labels, _ = read_input_h5(args.input, dtype)
    with torch.no_grad():
        s = model(x, labels)
    with h5py.File(args.out, "w") as f:
        f.create_dataset("score", data=s.numpy().astype(np.float32))
    return 0


def cmd_grad(args):
    import h5py
    dtype = torch.float64 if args.double else torch.float32
    model = load_model_h5(args.model).to(dtype)
    x, labels, noise = read_input_h5(args.input, dtype)
    if noise is None:
        raise ValueError(f"{args.input}: no dataset /noise")
    loss = model.dsm_loss(x, labels, noise)
    loss.backward()
    with h5py.File(args.out, "w") as f:
        f.create_dataset("loss", data=np.float64(loss.item()))
        g = f.create_group("grad")
        for key, p in model.named_parameters():
            g.create_dataset(key, data=grad_or_zeros(p).numpy().astype(np.float32))
    return 0


def cmd_selftest(args):
    torch.manual_seed(0)
    # 1. Parameter count at the defaults.
    m = NCSNRef()
    n = m.param_count()
    print(f"default parameter count: {n:,} ({len(m.param_keys())} tensors)")
    if n != DEFAULT_PARAM_COUNT:
        print(f"FAIL: expected {DEFAULT_PARAM_COUNT:,}")
        return 1
    del m

    # 2. HDF5 round trip of a small model with random weights and sigmas.
    import os
    import tempfile
    small = NCSNRef(2, 4, 3, (1, 3, 2, 1), scale_by_sigma=False, sigmas=make_sigmas(1.0, 0.1, 3))
    with torch.no_grad():
        for p in small.parameters():
            p.normal_()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.h5")
        save_model_h5(small, path)
        back = load_model_h5(path)
    sd0, sd1 = small.state_dict(), back.state_dict()
    same = (list(sd0) == list(sd1) and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
            and back.dilations == small.dilations and not back.scale_by_sigma)
    print(f"HDF5 round trip: {'ok' if same else 'FAIL'}")
    if not same:
        return 1

    # 3. gradcheck of the loss in float64 w.r.t. every parameter and x.
    from torch.nn.utils.stateless import functional_call
    tiny = NCSNRef(1, 2, 3, (1, 2, 1, 2), scale_by_sigma=True,
                   sigmas=make_sigmas(1.0, 0.2, 3)).double()
    with torch.no_grad():
        for key, p in tiny.named_parameters():
            if key.endswith("embed.weight"):
                p[:, :tiny.nf].normal_(1.0, 0.2)      # gamma around 1 ...
                p[:, tiny.nf:].normal_(0.0, 0.3)      # ... beta random
            else:
                p.normal_(0.0, 0.5)
    x = torch.rand(2, 1, 5, 4, dtype=torch.float64) * 2 - 1
    labels = torch.tensor([2, 0])
    noise = torch.randn(2, 1, 5, 4, dtype=torch.float64)
    gaps = []
    tiny.set_crp_gap_log(gaps)
    tiny.dsm_loss(x, labels, noise)
    tiny.set_crp_gap_log(None)
    print(f"smallest max-pool near-tie gap (relative): {min(gaps):.2e}")
    keys = tiny.param_keys()
    params = tuple(p.detach().clone().requires_grad_(True) for p in tiny.parameters())
    xin = x.clone().requires_grad_(True)

    wrapper = _LossWrapper(tiny)

    def loss_fn(xv, *ps):
        # functional_call runs forward(), which the wrapper routes to dsm_loss.
        return functional_call(wrapper, {"m." + k: v for k, v in zip(keys, ps)},
                               (xv, labels, noise))

    # Every coordinate of x; the parameters by random directions (fast mode),
    # or every coordinate of every parameter with --full (a few minutes).
    ok_x = torch.autograd.gradcheck(lambda xv: loss_fn(xv, *params), (xin,),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)
    ok_p = torch.autograd.gradcheck(loss_fn, (xin,) + params, eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=not args.full)
    ok = ok_x and ok_p
    print(f"gradcheck of dsm_loss w.r.t. x and {sum(p.numel() for p in params)} parameters "
          f"({'every coordinate' if args.full else 'fast mode'}): {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


class _LossWrapper(nn.Module):
    """forward(x, labels, noise) = m.dsm_loss(...), for functional_call."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, labels, noise):
        return self.m.dsm_loss(x, labels, noise)


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch reference of the NCSN score network")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("selftest", help="parameter count, HDF5 round trip, gradcheck")
    p.add_argument("--full", action="store_true",
                   help="gradcheck every parameter coordinate (slow), not random directions")
    p = sub.add_parser("init", help="write a model file (DESIGN init)")
    p.add_argument("--out", required=True)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--nf", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--dilations", default="1,2,4,8")
    p.add_argument("--no-scale-by-sigma", action="store_true")
    p.add_argument("--norm", choices=sorted(NORMS), default="cin")
    p.add_argument("--sigma-begin", type=float)
    p.add_argument("--sigma-end", type=float)
    p.add_argument("--sigmas")
    p.add_argument("--seed", type=int, default=0)
    for name in ("score", "grad"):
        p = sub.add_parser(name, help=f"the C binary's '{name}' command")
        p.add_argument("--model", required=True)
        p.add_argument("--input", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--double", action="store_true", help="compute in float64")
    args = ap.parse_args(argv)
    return {"selftest": cmd_selftest, "init": cmd_init,
            "score": cmd_score, "grad": cmd_grad}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
