#!/usr/bin/python3
"""bench_torch.py: times the NCSN network in PyTorch, as a baseline for ncsn.

The network is the project's independent PyTorch reference
(tests/ref/ncsn_ref.py, DESIGN.md section 1), float32, NCHW. Two
measurements, each a median over --reps repetitions after --warmup
untimed ones:

  train   one optimizer step at --train-batch (default 8): DSM loss of
          DESIGN.md section 2 (labels y ~ U{0..L-1} and noise z ~ N(0, I)
          drawn with torch on each step), backward, torch.optim.Adam step
          (lr 1e-3, betas 0.9/0.999, eps 1e-8, as ncsn train).
  sample  one annealed Langevin step at --sample-batch (default 16), as in
          DESIGN.md section 3: one forward pass under torch.no_grad() plus
          x = clamp(x + a s(x, i) + sqrt(2a) z, -1, 1), cycling i over the
          noise levels (the cost does not depend on i).

Prints one JSON object: per measurement the median seconds, images/s,
effective GFLOP/s (direct-convolution FLOPs of the forward pass, times 3 for
a training step, as bench/bench_net counts them), the process's CPU time
over wall time during the timed steps (below the thread count when other
programs took the cores), and the process's peak RSS (ru_maxrss, KB).

PyTorch's convolutions page-fault their activations on every step under
glibc's default malloc; for its best, run it with
MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736
(DESIGN.md section 7). bench/compare.sh does.

usage: bench_torch.py [--threads N] [--reps R] [--warmup W]
                      [--what train|sample|both] [--nf 128] [--image-size 32]
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))

import torch  # noqa: E402

from ncsn_ref import NCSNRef, make_sigmas  # noqa: E402

NUM_CLASSES = 10
SIGMA_BEGIN, SIGMA_END = 50.0, 0.01
STEP_LR = 2e-5  # DESIGN.md section 3 default
POOL = 64       # synthetic images the training batches are cut from, like compare.sh's data set


def conv_flops_per_image(model, height, width):
    """Direct-convolution FLOPs of one forward pass of one image:
    2 * Cout * Cin * 9 * H * W per executed 3x3 conv. refine4's MSF is never
    executed (one input), so its conv does not count."""
    total = 0
    for name, p in model.named_parameters():
        if p.dim() == 4 and not name.startswith("refine4.msf"):
            total += 2 * p.numel() * height * width
    return total


def timed(fn, reps, warmup):
    """Run fn warmup + reps times; wall and process-CPU seconds of the timed ones."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def summary(wall, cpu, batch, flops):
    med = statistics.median(wall)
    return {
        "batch": batch,
        "median_s": med,
        "images_per_s": batch / med,
        "gflops_effective": flops * batch / med / 1e9,
        "cpu_over_wall": sum(cpu) / sum(wall),
        "steps_s": [round(t, 4) for t in wall],
    }


def bench_train(model, args, gen, flops):
    c, hw, b = args.channels, args.image_size, args.train_batch
    pool = torch.rand(POOL, c, hw, hw, generator=gen) * 2 - 1  # [POOL, C, H, W] in [-1, 1]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    model.train()
    state = {"step": 0, "loss": 0.0}

    def step():
        start = (state["step"] * b) % (POOL - b + 1)
        x = pool[start:start + b]                                          # [B, C, H, W]
        labels = torch.randint(0, NUM_CLASSES, (b,), generator=gen)        # [B]
        z = torch.randn(x.shape, generator=gen)                            # [B, C, H, W]
        opt.zero_grad(set_to_none=True)
        loss = model.dsm_loss(x, labels, z)
        loss.backward()
        opt.step()
        state["loss"] = loss.item()
        state["step"] += 1

    wall, cpu = timed(step, args.reps, args.warmup)
    if not math.isfinite(state["loss"]):
        raise SystemExit(f"bench_torch: non-finite training loss {state['loss']}")
    out = summary(wall, cpu, b, 3 * flops)
    out["last_loss"] = state["loss"]
    return out


def bench_sample(model, args, gen, flops):
    c, hw, b = args.channels, args.image_size, args.sample_batch
    sig = model.sigmas
    model.eval()
    state = {"x": torch.rand(b, c, hw, hw, generator=gen) * 2 - 1, "k": 0}  # x: [B, C, H, W]

    def step():
        i = state["k"] % NUM_CLASSES
        a = STEP_LR * float(sig[i] / sig[-1]) ** 2
        labels = torch.full((b,), i, dtype=torch.long)                     # [B]
        with torch.no_grad():
            z = torch.randn(state["x"].shape, generator=gen)               # [B, C, H, W]
            x = state["x"] + a * model(state["x"], labels) + math.sqrt(2 * a) * z
            state["x"] = x.clamp_(-1, 1)
        state["k"] += 1

    wall, cpu = timed(step, args.reps, args.warmup)
    return summary(wall, cpu, b, flops)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads [1]")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions; use >= 5 for a result [5]")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first [1]")
    p.add_argument("--what", choices=("train", "sample", "both"), default="both")
    p.add_argument("--nf", type=int, default=128)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--sample-batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads < 1 or args.reps < 1 or args.warmup < 0:
        p.error("--threads and --reps must be >= 1, --warmup >= 0")
    if args.reps < 5:
        print(f"bench_torch: --reps {args.reps} < 5: a smoke test, not a measurement", file=sys.stderr)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = NCSNRef(in_channels=args.channels, nf=args.nf, num_classes=NUM_CLASSES,
                    sigmas=make_sigmas(SIGMA_BEGIN, SIGMA_END, NUM_CLASSES))
    flops = conv_flops_per_image(model, args.image_size, args.image_size)

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "nf": args.nf,
        "image": [args.channels, args.image_size, args.image_size],
        "params": model.param_count(),
        "gflop_forward_per_image": flops / 1e9,
        "reps": args.reps,
        "warmup": args.warmup,
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
    }
    if args.what in ("train", "both"):
        result["train"] = bench_train(model, args, gen, flops)
    if args.what in ("sample", "both"):
        result["sample"] = bench_sample(model, args, gen, flops)
    result["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
