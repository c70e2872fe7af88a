#!/usr/bin/env python3
"""scaling_model.py: how long NCSN's CIFAR-10 schedule (200k steps of 128
images, nf 128, 3x32x32) would take on a cluster, from figures measured on
one machine (docs/scaling.md says where each comes from).

The model, for C cores in nodes of --node-cores, one rank per node and the
node's cores as threads of that rank (R = C / node-cores ranks):
  - a rank holds b = 128 / R images; its threads split them (whole images
    per thread while b >= threads), else split each image's work
    (threads inside a sample), with the speedup of Amdahl's law for a
    serial fraction f taken from bench/bench_threads: its 2-thread speedup
    at batch 1 is first scaled by 2 / (its ceiling, two independent
    1-thread copies at once), so the VM's own contention between its two
    cores is not counted against the code, then f = 2 / speedup - 1;
  - compute time = images per thread x seconds per image on one core, or
    seconds per image / speedup(threads per image);
  - the gradient allreduce is a ring over the R ranks:
    2 (R-1)/R x bytes / link bandwidth + 2 (R-1) x latency;
  - it runs during the backward pass (gradients are sent as each block is
    ready), so only the part longer than the backward pass adds to a step.
usage: scaling_model.py [--image-s S] [--speedup-2 X] [--ceiling-2 Y] [--sample-s F]
                        [--node-cores N] [--latency-us L]
"""
import argparse
import math

PARAMS = 12_471_555  # ncsn init's default network
STEPS, BATCH = 200_000, 128


def speedup(threads, f):
    return 1.0 / (f + (1.0 - f) / threads)


def step_time(cores, a, gbps):
    ranks = max(1, cores // a.node_cores)
    threads = cores // ranks
    images = math.ceil(BATCH / ranks)
    if images >= threads:
        compute = math.ceil(images / threads) * a.image_s
    else:
        compute = a.image_s / speedup(threads // images, a.serial_fraction)
    nbytes = 4.0 * PARAMS
    ring = 0.0
    if ranks > 1:
        ring = 2 * (ranks - 1) / ranks * nbytes / (gbps * 1e9 / 8) + 2 * (ranks - 1) * a.latency_us * 1e-6
    exposed = max(0.0, ring - a.backward_share * compute)
    return ranks, threads, images, compute, ring, exposed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image-s", type=float, required=True,
                   help="training step seconds, batch 1, 1 thread (bench_threads: training, 1 thread s)")
    p.add_argument("--sample-s", type=float, required=True,
                   help="forward pass seconds, batch 1, 1 thread (bench_threads: sampling, 1 thread s)")
    p.add_argument("--speedup-2", type=float, required=True, help="bench_threads: training batch 1, threads/1")
    p.add_argument("--ceiling-2", type=float, required=True, help="bench_threads: training batch 1, ceiling/1")
    p.add_argument("--node-cores", type=int, default=32)
    p.add_argument("--latency-us", type=float, default=5.0, help="per message on the link")
    a = p.parse_args()
    clean = a.speedup_2 * 2.0 / a.ceiling_2
    a.serial_fraction = max(0.0, 2.0 / clean - 1.0)
    a.backward_share = 1.0 - a.sample_s / a.image_s
    print(f"model: {a.image_s} s per image on one core; 2 threads {a.speedup_2}x of a ceiling {a.ceiling_2}x, "
          f"so {clean:.2f}x on free cores, serial fraction {a.serial_fraction:.3f}; backward share "
          f"{a.backward_share:.2f}; {a.node_cores} cores per node, one rank per node; gradients {4 * PARAMS / 1e6:.1f} MB")
    print(f"{'cores':>6} {'ranks':>5} {'threads':>7} {'img/rank':>8} {'compute s':>9} {'link':>8} "
          f"{'ring s':>7} {'exposed s':>9} {'step s':>7} {'200k steps':>11}")
    for cores in (128, 512, 1024, 2048, 4096):
        for gbps in (10, 25, 100):
            ranks, threads, images, compute, ring, exposed = step_time(cores, a, gbps)
            step = compute + exposed
            print(f"{cores:>6} {ranks:>5} {threads:>7} {images:>8} {compute:>9.3f} {gbps:>5} Gb {ring:>7.3f} "
                  f"{exposed:>9.3f} {step:>7.3f} {STEPS * step / 3600:>9.1f} h")


if __name__ == "__main__":
    main()
