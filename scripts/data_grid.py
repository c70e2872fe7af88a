#!/usr/bin/env python3
"""Grid pictures of images from ncsn-mpi HDF5 files.

    data_grid.py FILE [--dataset NAME] [--n 64] --out GRID.png
    data_grid.py --beside LEFT.h5:DATASET RIGHT.h5:DATASET [--n 64] --out BOTH.png

FILE holds a dataset file's uint8 [N,H,W(,C)] images (mapped with x/127.5-1)
or float32 [N,C,H,W] in [-1,1] (a samples file's /samples). --beside puts two
grids side by side (e.g. generated samples next to real images), each with
its title. Exit 2 with a message naming the file on bad input."""
import argparse
import math
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def fail(msg):
    print(f"data_grid.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load(spec, default_name, n):
    path, _, name = spec.partition(":")
    name = name or default_name
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                fail(f"{path}: dataset {name} is missing")
            d = f[name]
            x = d[: min(n, d.shape[0])]
    except OSError as e:
        fail(f"{path}: cannot open as HDF5 ({e})")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 127.5 - 1.0
        if x.ndim == 3:
            x = x[..., None]          # N,H,W -> N,H,W,1
    elif x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))  # N,C,H,W -> N,H,W,C
    else:
        fail(f"{path}: dataset {name} has shape {x.shape}, expected images")
    return np.clip((x + 1.0) / 2.0, 0.0, 1.0)


def grid(x):
    n, h, w, c = x.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    g = np.ones(((h + 1) * rows + 1, (w + 1) * cols + 1, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        g[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = x[i]
    return g[..., 0] if c == 1 else g


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--dataset", default="images")
    ap.add_argument("--beside", nargs=2, metavar=("LEFT", "RIGHT"))
    ap.add_argument("--titles", nargs=2, default=["generated", "real"])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.beside:
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
        for ax, spec, title in zip(axes, a.beside, a.titles):
            ax.imshow(grid(load(spec, "images", a.n)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(a.out, dpi=100)
    elif a.file:
        plt.imsave(a.out, grid(load(a.file, a.dataset, a.n)), cmap="gray", vmin=0, vmax=1)
    else:
        fail("give FILE or --beside LEFT RIGHT")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
