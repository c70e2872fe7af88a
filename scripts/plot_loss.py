#!/usr/bin/python3
"""plot_loss.py: plot the training loss of a run directory.

    plot_loss.py RUN_DIR [--out loss.png] [--window W] [--log-y]

Reads RUN_DIR/metrics.csv, whose header names the columns
(step,loss,lr,grad_norm,images_per_s,wall_s; the columns are found by name,
so more may follow) and which has one row per logged step.  After a resume a
step can appear more than once: the last row of each step wins, as it is the
one of the run that went on.  Rows that do not parse (say, a line cut short
when a job was killed) are skipped with a warning.

Plots loss against step, raw and as a trailing moving average over W logged
points (default: about 1/50 of them, at least 1), to a PNG (default
RUN_DIR/loss.png).  Exit status 2 when the file is missing or has no usable rows.

When RUN_DIR/eval.csv exists (written by `ncsn train --sample-every K
--eval-data FILE`: step,fd,fd_floor,classifier_score,classes_5pct,n_classes), a second
panel beside the loss draws the samples' feature-space distance against
step, with the real images' floor as a dashed line.
"""

import argparse
import collections
import csv
import math
import os
import sys

PROG = "plot_loss.py"


def fail(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_metrics(path):
    """-> (steps, losses) sorted by step, last row per step; number of rows read."""
    if not os.path.isfile(path):
        fail(f"{path}: no such file")
    by_step = {}
    rows = skipped = 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            fail(f"{path}: empty file, expected a header line starting with step,loss")
        header = [h.strip() for h in header]
        if "step" not in header or "loss" not in header:
            fail(f"{path}: header {','.join(header)!r} has no step and loss columns")
        i_step, i_loss = header.index("step"), header.index("loss")
        for row in reader:
            if not row or not "".join(row).strip():
                continue
            rows += 1
            try:
                step = int(float(row[i_step]))
                loss = float(row[i_loss])
            except (IndexError, ValueError):
                skipped += 1
                continue
            by_step[step] = loss  # a later row of the same step replaces the earlier
    if skipped:
        print(f"{PROG}: warning: {path}: skipped {skipped} malformed row(s)", file=sys.stderr)
    if not by_step:
        fail(f"{path}: no data rows")
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps], rows


def read_eval(path):
    """-> {step: (fd, fd_floor)} from RUN_DIR/eval.csv, last row per step; {} if absent."""
    if not os.path.isfile(path):
        return {}
    by_step = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "step" not in header or "fd" not in header:
            print(f"{PROG}: warning: {path}: no step and fd columns; not drawn", file=sys.stderr)
            return {}
        i_step, i_fd = header.index("step"), header.index("fd")
        i_floor = header.index("fd_floor") if "fd_floor" in header else None
        for row in reader:
            try:
                floor = float(row[i_floor]) if i_floor is not None else float("nan")
                by_step[int(float(row[i_step]))] = (float(row[i_fd]), floor)
            except (IndexError, ValueError):
                continue
    return by_step


def moving_average(values, window):
    """Trailing mean over the last `window` finite values (fewer at the start)."""
    out = []
    acc, n = 0.0, 0
    buf = collections.deque()
    for v in values:
        buf.append(v)
        if math.isfinite(v):
            acc += v
            n += 1
        if len(buf) > window:
            old = buf.popleft()
            if math.isfinite(old):
                acc -= old
                n -= 1
        out.append(acc / n if n else float("nan"))
    return out


def main(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Plot loss vs step from RUN_DIR/metrics.csv.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="output PNG (default: RUN_DIR/loss.png)")
    p.add_argument("--window", type=int, help="moving-average window in logged points")
    p.add_argument("--log-y", action="store_true", help="logarithmic loss axis")
    a = p.parse_args(argv)
    if a.window is not None and a.window < 1:
        p.error(f"--window must be a positive integer, got {a.window}")
    if not os.path.isdir(a.run_dir):
        fail(f"{a.run_dir}: no such directory")
    csv_path = os.path.join(a.run_dir, "metrics.csv")
    out = a.out or os.path.join(a.run_dir, "loss.png")

    steps, losses, rows = read_metrics(csv_path)
    window = a.window or max(1, len(steps) // 50)
    smooth = moving_average(losses, window)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = read_eval(os.path.join(a.run_dir, "eval.csv"))
    if evals:
        fig, (ax, ax_fd) = plt.subplots(1, 2, figsize=(13, 4.5), dpi=100)
        e_steps = sorted(evals)
        ax_fd.plot(e_steps, [evals[k][0] for k in e_steps], "o-", color="tab:red", label="samples")
        ax_fd.plot(e_steps, [evals[k][1] for k in e_steps], "--", color="gray", label="real images (floor)")
        ax_fd.set_xlabel("step")
        ax_fd.set_ylabel("feature-space distance (lower is better)")
        ax_fd.grid(True, alpha=0.3)
        ax_fd.legend()
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.35, color="tab:blue", label="loss")
    ax.plot(steps, smooth, lw=1.8, color="tab:blue", label=f"moving average ({window} points)")
    if a.log_y and all(v > 0 for v in losses if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(os.path.basename(os.path.normpath(os.path.abspath(a.run_dir))))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out + ".tmp.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    except OSError as e:
        fail(f"{out}: cannot write ({e})")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    plt.close(fig)
    print(f"{PROG}: plotted {len(steps)} steps ({rows} rows, {rows - len(steps)} replaced or skipped) "
          f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
