#!/usr/bin/python3
"""ncsn_convert.py: build the dataset file of DESIGN.md section 4 from real image sources.

    ncsn_convert.py --format idx|cifar|npy INPUT [INPUT...] --out DATA.h5
                    [--dataset images] [--size S] [--limit N]
                    [--labels] [--label-file PATH ...]

Formats
  idx    IDX image files as MNIST/Fashion-MNIST ship them (unsigned byte, 3-D,
         optionally gzipped) -> uint8 [N, H, W].  With --labels, /labels uint8 [N]
         comes from the IDX label file given with --label-file (one per input, in
         the same order); without --label-file the usual sibling name is tried
         (train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz]).
  cifar  CIFAR-10 binary batches: records of 1 label byte + 3072 image bytes
         (3x32x32, channel-major) -> uint8 [N, 32, 32, 3] (HWC) and /labels uint8 [N]
         (always: the label is part of every record).
  npy    one NumPy .npy array per input: uint8 [N, H, W] or [N, H, W, C] is stored
         as it is; a float array [N, C, H, W] with values in [-1, 1] is stored as
         float32 with attribute layout = "NCHW".  With --labels, --label-file gives
         one integer .npy array [N] per input.

Options
  --size S   resize every image to S x S: a box filter (area average) when both
             sides shrink by an integer factor, bilinear interpolation (half-pixel
             centres, edges clamped) otherwise.  uint8 stays uint8 (rounded).
  --limit N  keep the first N images of the concatenated inputs.
  --dataset  name of the image dataset (default "images").

The images are written chunked (a few hundred images per chunk, at most about
1 MiB) with attributes `source` (input file names) and `created_by`; the file is
written as OUT.tmp and renamed, so OUT only ever appears complete.  Any problem
with an input exits with status 2 and one line naming the file and the fault.
"""

import argparse
import gzip
import os
import sys
import zlib

import numpy as np

PROG = "ncsn_convert.py"
CIFAR_IMAGE_BYTES = 3 * 32 * 32
CIFAR_RECORD_BYTES = 1 + CIFAR_IMAGE_BYTES
CHUNK_BYTES = 1 << 20


class InputError(Exception):
    """A problem with an input, reported as 'PATH: message' with exit status 2."""

    def __init__(self, path, message):
        super().__init__(f"{path}: {message}")


def fail(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- reading inputs

def read_bytes(path):
    """Whole file contents, gunzipped when it starts with the gzip magic."""
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.isdir(path):
        raise InputError(path, "is a directory, expected a file")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(path, f"cannot read ({e})")
    return data


IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short",
             0x0C: "int", 0x0D: "float", 0x0E: "double"}


def read_idx(path, want_ndim, what):
    """An IDX file of unsigned bytes with want_ndim dimensions -> uint8 array."""
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(path, f"bad magic number {data[:4].hex() or '(empty file)'}, "
                               f"expected 0000 08 0{want_ndim} for an IDX {what} file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        name = IDX_TYPES.get(dtype_code, "unknown")
        raise InputError(path, f"bad magic number {data[:4].hex()}: data type 0x{dtype_code:02x} "
                               f"({name}), expected 0x08 (unsigned byte)")
    if ndim != want_ndim:
        raise InputError(path, f"bad magic number {data[:4].hex()}: {ndim} dimensions, expected "
                               f"{want_ndim} for an IDX {what} file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(path, "truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise InputError(path, f"wrong size: {len(data)} bytes, expected {expected} for "
                               f"dimensions {'x'.join(map(str, dims))}")
    if any(d == 0 for d in dims):
        raise InputError(path, f"IDX file has an empty dimension ({'x'.join(map(str, dims))})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def guess_idx_label_file(path):
    """train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz (if it exists)."""
    d, base = os.path.split(path)
    if "images-idx3" not in base:
        return None
    cand = os.path.join(d, base.replace("images-idx3", "labels-idx1"))
    if os.path.exists(cand):
        return cand
    for alt in (cand + ".gz", cand[:-3] if cand.endswith(".gz") else None):
        if alt and os.path.exists(alt):
            return alt
    return None


def load_idx(path, label_path):
    images = read_idx(path, 3, "image")
    labels = None
    if label_path is not None:
        labels = read_idx(label_path, 1, "label")
        if labels.shape[0] != images.shape[0]:
            raise InputError(label_path, f"has {labels.shape[0]} labels, but {path} has "
                                         f"{images.shape[0]} images")
    return images, labels


def load_cifar(path):
    data = read_bytes(path)
    if len(data) == 0 or len(data) % CIFAR_RECORD_BYTES != 0:
        raise InputError(path, f"wrong record size: {len(data)} bytes is not a multiple of the "
                               f"{CIFAR_RECORD_BYTES}-byte CIFAR-10 record (1 label byte + "
                               f"{CIFAR_IMAGE_BYTES} image bytes)")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
    labels = rec[:, 0].copy()
    bad = np.nonzero(labels > 9)[0]
    if bad.size:
        raise InputError(path, f"record {bad[0]} has label byte {labels[bad[0]]}, expected a "
                               f"CIFAR-10 class 0..9 (is this CIFAR-100?)")
    # each record stores the image channel-major (3 planes of 32x32): CHW -> HWC
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_npy_array(path, what):
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(path, f"not a readable .npy {what} array ({e})")


def load_npy(path, label_path):
    a = load_npy_array(path, "image")
    shape = "x".join(map(str, a.shape))
    if a.dtype == np.uint8:
        if a.ndim not in (3, 4):
            raise InputError(path, f"uint8 array of shape {shape}, expected [N,H,W] or [N,H,W,C]")
        if a.ndim == 4 and a.shape[3] > 4:
            raise InputError(path, f"uint8 array of shape {shape} has {a.shape[3]} channels last; "
                                   f"uint8 images must be [N,H,W,C] (HWC), is it CHW?")
        images = np.ascontiguousarray(a)
    elif a.dtype.kind == "f":
        if a.ndim != 4:
            raise InputError(path, f"float array of shape {shape}, expected [N,C,H,W] in [-1,1]")
        if a.shape[1] > 4 and a.shape[3] <= 4:
            raise InputError(path, f"float array of shape {shape} looks channels-last; "
                                   f"float images must be [N,C,H,W]")
        images = np.asarray(a, dtype=np.float32)
        if not np.all(np.isfinite(images)):
            raise InputError(path, "float array has NaN or Inf values")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.0 or hi > 1.0:
            raise InputError(path, f"float values range over [{lo:.6g}, {hi:.6g}], expected [-1, 1] "
                                   f"(map uint8 pixels with x/127.5-1, or store them as uint8)")
    else:
        raise InputError(path, f"array of dtype {a.dtype}, expected uint8 [N,H,W]/[N,H,W,C] "
                               f"or float [N,C,H,W] in [-1,1]")
    if any(d == 0 for d in images.shape):
        raise InputError(path, f"array of shape {shape} is empty")
    labels = None
    if label_path is not None:
        lab = load_npy_array(label_path, "label")
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise InputError(label_path, f"labels of dtype {lab.dtype} and shape "
                                         f"{'x'.join(map(str, lab.shape))}, expected integers [N]")
        if lab.shape[0] != images.shape[0]:
            raise InputError(label_path, f"has {lab.shape[0]} labels, but {path} has "
                                         f"{images.shape[0]} images")
        if lab.min() < 0 or lab.max() > 255:
            raise InputError(label_path, f"labels range over [{lab.min()}, {lab.max()}], expected 0..255")
        labels = np.asarray(lab, dtype=np.uint8)
    return images, labels


# ---------------------------------------------------------------- resizing

def _bilinear_axis(x, axis, n_out):
    """Linear interpolation along one axis, half-pixel centres, edges clamped."""
    n_in = x.shape[axis]
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (pos - i0).astype(x.dtype)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def resize_block(x, size, hw_axes):
    """x float64 images, spatial axes hw_axes=(ah, aw) -> same layout with size x size."""
    ah, aw = hw_axes
    H, W = x.shape[ah], x.shape[aw]
    if H % size == 0 and W % size == 0 and H >= size and W >= size:
        # box filter: every output pixel is the mean of an fh x fw block
        fh, fw = H // size, W // size
        shape = list(x.shape)
        shape[aw:aw + 1] = [size, fw]
        shape[ah:ah + 1] = [size, fh]
        # aw > ah, so inserting at aw first keeps ah's index valid
        return x.reshape(shape).mean(axis=(ah + 1, aw + 2))
    return _bilinear_axis(_bilinear_axis(x, ah, size), aw, size)


def resize(images, size, layout):
    """uint8 [N,H,W]/[N,H,W,C] or float32 [N,C,H,W] -> same dtype, S x S."""
    hw_axes = (2, 3) if layout == "NCHW" else (1, 2)
    if images.shape[hw_axes[0]] == size and images.shape[hw_axes[1]] == size:
        return images
    out_shape = list(images.shape)
    out_shape[hw_axes[0]] = out_shape[hw_axes[1]] = size
    out = np.empty(out_shape, dtype=images.dtype)
    step = 2048
    for i in range(0, images.shape[0], step):
        block = resize_block(np.asarray(images[i:i + step], dtype=np.float64), size, hw_axes)
        if images.dtype == np.uint8:
            block = np.clip(np.rint(block), 0, 255)
        out[i:i + step] = block
    return out


# ---------------------------------------------------------------- writing

def str_attr(s):
    """Fixed-length string attribute, as the C side writes them."""
    return np.bytes_(s.encode("utf-8"))


def write_h5(out, name, images, labels, attrs):
    import h5py

    tmp = out + ".tmp"
    per_image = images[0].nbytes
    chunk_n = int(max(1, min(images.shape[0], 256, CHUNK_BYTES // per_image)))
    try:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(name, data=images, chunks=(chunk_n,) + images.shape[1:])
            for k, v in attrs.items():
                ds.attrs[k] = str_attr(v) if isinstance(v, str) else v
            if labels is not None:
                f.create_dataset("labels", data=labels)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Build an ncsn dataset file (DESIGN.md 4).",
                                epilog="Exit status 2 on bad usage or bad input.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="input files, concatenated in order")
    p.add_argument("--format", required=True, choices=("idx", "cifar", "npy"), help="input format")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--dataset", default="images", help="image dataset name (default: images)")
    p.add_argument("--size", type=int, help="resize images to SIZE x SIZE")
    p.add_argument("--limit", type=int, help="keep only the first N images")
    p.add_argument("--labels", action="store_true", help="also write /labels (idx, npy)")
    p.add_argument("--label-file", action="append", default=[], metavar="PATH",
                   help="label file for the matching INPUT (repeat, one per input); implies --labels")
    a = p.parse_args(argv)
    if a.size is not None and a.size < 1:
        p.error(f"--size must be a positive integer, got {a.size}")
    if a.limit is not None and a.limit < 1:
        p.error(f"--limit must be a positive integer, got {a.limit}")
    if a.label_file:
        a.labels = True
        if a.format == "cifar":
            p.error("--label-file is not used with --format cifar (labels are in the records)")
        if len(a.label_file) != len(a.inputs):
            p.error(f"{len(a.label_file)} --label-file given for {len(a.inputs)} inputs, "
                    f"expected one per input")
    if not a.dataset.strip("/") or a.dataset.strip("/") == "labels":
        p.error(f"--dataset {a.dataset!r} is not a usable dataset name")
    return a


def main(argv):
    a = parse_args(argv)
    for path in a.inputs:
        if not os.path.isfile(path):
            fail(f"{path}: no such file")
    label_files = list(a.label_file)
    if a.labels and a.format == "idx" and not label_files:
        for path in a.inputs:
            guess = guess_idx_label_file(path)
            if guess is None:
                fail(f"{path}: no matching IDX label file found; give it with --label-file")
            label_files.append(guess)
    if a.labels and a.format == "npy" and not label_files:
        fail("--labels with --format npy needs --label-file (an integer .npy array per input)")

    want_labels = a.labels or a.format == "cifar"
    parts, label_parts, sources = [], [], []
    have = 0
    try:
        for i, path in enumerate(a.inputs):
            if a.limit is not None and have >= a.limit:
                break
            lpath = label_files[i] if label_files else None
            if a.format == "idx":
                images, labels = load_idx(path, lpath if a.labels else None)
            elif a.format == "cifar":
                images, labels = load_cifar(path)
            else:
                images, labels = load_npy(path, lpath if a.labels else None)
            if a.limit is not None:
                images = images[:a.limit - have]
                labels = None if labels is None else labels[:a.limit - have]
            if parts:
                first = parts[0]
                if images.dtype != first.dtype or images.shape[1:] != first.shape[1:]:
                    raise InputError(path, f"images are {images.dtype} "
                                           f"{'x'.join(map(str, images.shape[1:]))}, but "
                                           f"{sources[0]} has {first.dtype} "
                                           f"{'x'.join(map(str, first.shape[1:]))}")
            parts.append(images)
            label_parts.append(labels)
            sources.append(os.path.basename(path))
            if lpath is not None and a.labels:
                sources[-1] += f" (labels: {os.path.basename(lpath)})"
            have += images.shape[0]
    except InputError as e:
        fail(str(e))

    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
    layout = "NCHW" if images.dtype == np.float32 else None
    labels = None
    if want_labels:
        labels = np.concatenate(label_parts).astype(np.uint8)

    attrs = {"source": ", ".join(sources),
             "created_by": f"scripts/{PROG} --format {a.format}"
                           + (f" --size {a.size}" if a.size else "")
                           + (f" --limit {a.limit}" if a.limit else "")}
    if layout:
        attrs["layout"] = layout
    if a.size is not None:
        hw = images.shape[2:4] if layout else images.shape[1:3]
        if tuple(hw) != (a.size, a.size):
            box = hw[0] % a.size == 0 and hw[1] % a.size == 0 and hw[0] >= a.size and hw[1] >= a.size
            attrs["resized_from"] = np.array(hw, dtype=np.int32)
            attrs["resize_method"] = "box" if box else "bilinear"
        images = resize(images, a.size, layout)

    out_dir = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(out_dir):
        fail(f"{a.out}: directory {out_dir} does not exist")
    try:
        write_h5(a.out, a.dataset, images, labels, attrs)
    except OSError as e:
        fail(f"{a.out}: cannot write ({e})")

    print(f"{PROG}: wrote {images.shape[0]} images, shape [{','.join(map(str, images.shape))}], "
          f"{images.dtype}{' layout NCHW' if layout else ''}"
          f"{', with /labels' if labels is not None else ''} -> {a.out}:/{a.dataset.strip('/')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
