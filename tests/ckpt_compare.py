#!/usr/bin/env python3
"""ckpt_compare.py: HDF5 helpers for tests/test_ckpt.sh (h5py + numpy).

    same A.h5 B.h5 [GROUP ...]   every dataset of each GROUP (default: model,
                                 optim/adam_m, optim/adam_v, ema) is present in
                                 both files and bitwise equal
    losses A.csv B.csv FIRST LAST RTOL
                                 metrics.csv losses of steps FIRST..LAST agree
                                 to RTOL (the last line of a step counts, since
                                 a resumed run may have repeated steps)
    valid FILE ...               each file is a complete training checkpoint:
                                 every dataset reads back (Fletcher32 is checked
                                 on read), the groups hold the same keys and
                                 /train has its attributes; prints the step
    step FILE                    prints the /train step attribute
    flip FILE DATASET|GROUP      flips one byte in the middle of the raw data
                                 of DATASET (of the largest dataset of GROUP)
                                 and checks that h5py can no longer read it
    refload FILE REF_DIR         loads /model through REF_DIR/ncsn_ref.py's
                                 load_model_h5 and checks every parameter and
                                 the sigmas equal the file's; exit 77 when
                                 torch or ncsn_ref.py is missing
    usr1-during-write FIRST_PID WRITER_PID RUN_DIR
                                 SIGUSR1 to FIRST_PID, then a second SIGUSR1
                                 to WRITER_PID as soon as a *.tmp.* file shows
                                 up in RUN_DIR (a checkpoint being written)

Exit status 0 ok, 1 mismatch or error, 2 bad usage.
"""

import csv
import os
import sys

import h5py
import numpy as np

DEFAULT_GROUPS = ["model", "optim/adam_m", "optim/adam_v", "ema"]
TRAIN_ATTRS = ["step", "epoch", "position", "seed", "batch", "data_shape", "has_ema", "rng",
               "options", "format_version"]


def datasets_of(group):
    """name -> dataset for the datasets directly inside an h5py group."""
    return {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}


def cmd_same(args):
    if len(args) < 2:
        return usage()
    a_path, b_path = args[0], args[1]
    groups = args[2:] or DEFAULT_GROUPS
    bad = []
    count = 0
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        for g in groups:
            if g not in a or g not in b:
                bad.append(f"group /{g} missing in {a_path if g not in a else b_path}")
                continue
            da, db = datasets_of(a[g]), datasets_of(b[g])
            if not da:
                bad.append(f"group /{g} of {a_path} holds no datasets")
            if set(da) != set(db):
                only_a = sorted(set(da) - set(db))[:3]
                only_b = sorted(set(db) - set(da))[:3]
                bad.append(f"/{g}: key sets differ (only in A: {only_a}, only in B: {only_b})")
                continue
            for k in sorted(da):
                x, y = da[k][()], db[k][()]
                count += 1
                if x.dtype != y.dtype or x.shape != y.shape:
                    bad.append(f"/{g}/{k}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
                elif not np.array_equal(x, y):
                    diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
                    bad.append(f"/{g}/{k}: {int((x != y).sum())} of {x.size} values differ, "
                               f"max |diff| {diff.max():.3g}")
    if bad:
        print(f"{a_path} vs {b_path}: {len(bad)} problem(s):")
        for line in bad[:12]:
            print("   ", line)
        return 1
    print(f"{count} datasets in {', '.join('/' + g for g in groups)} bitwise identical")
    return 0


def read_losses(path):
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                out[int(row["step"])] = float(row["loss"])
            except (TypeError, ValueError, KeyError):
                continue  # a line cut short by a kill
    return out


def cmd_losses(args):
    if len(args) != 5:
        return usage()
    a, b = read_losses(args[0]), read_losses(args[1])
    first, last, rtol = int(args[2]), int(args[3]), float(args[4])
    worst = 0.0
    ok = True
    for s in range(first, last + 1):
        if s not in a or s not in b:
            print(f"step {s}: missing in {args[0] if s not in a else args[1]}")
            ok = False
            continue
        rel = abs(a[s] - b[s]) / max(abs(b[s]), 1e-30)
        worst = max(worst, rel)
        mark = "" if rel <= rtol else "   <-- over tolerance"
        print(f"step {s}: {a[s]:.9g} vs {b[s]:.9g}, relative difference {rel:.3g}{mark}")
        ok = ok and rel <= rtol
    print(f"largest relative difference {worst:.3g} (tolerance {rtol:g})")
    return 0 if ok else 1


def check_valid(path):
    """None when path is a complete checkpoint, else the reason."""
    try:
        with h5py.File(path, "r") as f:
            for g in ["model", "optim/adam_m", "optim/adam_v", "train"]:
                if g not in f:
                    return f"group /{g} missing"
            keys = set(datasets_of(f["model"])) - {"sigmas"}
            if not keys:
                return "/model holds no parameters"
            groups = ["model", "optim/adam_m", "optim/adam_v"]
            t = f["train"].attrs
            for a in TRAIN_ATTRS:
                if a not in t:
                    return f"attribute {a} of /train missing"
            if int(t["has_ema"]):
                groups.append("ema")
            for g in groups:
                ds = datasets_of(f[g])
                if set(ds) - {"sigmas"} != keys:
                    return f"/{g} does not hold the same keys as /model"
                for k, d in ds.items():
                    if not d.fletcher32:
                        return f"/{g}/{k} is not protected by a Fletcher32 checksum"
                    a = d[()]  # raises on a checksum failure or a short file
                    if a.dtype != np.float32:
                        return f"/{g}/{k} is {a.dtype}, not float32"
            step = int(t["step"])
            if int(f["model"].attrs.get("step", step)) != step:
                return "/model step attribute differs from /train step"
            return None
    except Exception as e:  # noqa: BLE001 - any failure to read means invalid
        return f"{type(e).__name__}: {e}"


def cmd_valid(args):
    if not args:
        return usage()
    ok = True
    for p in args:
        why = check_valid(p)
        if why:
            print(f"{p}: NOT a complete checkpoint: {why}")
            ok = False
        else:
            with h5py.File(p, "r") as f:
                print(f"{p}: complete checkpoint at step {int(f['train'].attrs['step'])}")
    return 0 if ok else 1


def cmd_step(args):
    if len(args) != 1:
        return usage()
    with h5py.File(args[0], "r") as f:
        print(int(f["train"].attrs["step"]))
    return 0


def cmd_flip(args):
    if len(args) != 2:
        return usage()
    path, name = args
    with h5py.File(path, "r") as f:
        obj = f[name]
        if isinstance(obj, h5py.Group):
            ds = datasets_of(obj)
            name = obj.name + "/" + max(ds, key=lambda k: ds[k].size)
            obj = f[name]
        if obj.chunks is None:
            offset, size = obj.id.get_offset(), obj.id.get_storage_size()
        else:
            # Chunked storage: id.get_offset() is None; take the first chunk.
            info = obj.id.get_chunk_info(0)
            offset, size = info.byte_offset, info.size
        if offset is None or size == 0:
            print(f"{path}:{name}: no raw data on disk")
            return 1
    pos = offset + size // 2
    with open(path, "r+b") as fh:
        fh.seek(pos)
        byte = fh.read(1)[0]
        fh.seek(pos)
        fh.write(bytes([byte ^ 0xFF]))
    try:
        with h5py.File(path, "r") as f:
            f[name][()]
        print(f"{path}: flipped byte {pos} inside {name} but h5py still reads it")
        return 1
    except OSError:
        pass
    print(f"flipped the byte at offset {pos} (inside the {size}-byte raw data of {name} at {offset}); "
          f"h5py now refuses to read {name}")
    return 0


def cmd_refload(args):
    if len(args) != 2:
        return usage()
    path, ref_dir = args
    if not os.path.isfile(os.path.join(ref_dir, "ncsn_ref.py")):
        print(f"{ref_dir}/ncsn_ref.py not found")
        return 77
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch (python3-torch) not installed")
        return 77
    sys.path.insert(0, ref_dir)
    import ncsn_ref

    model = ncsn_ref.load_model_h5(path)
    n = 0
    with h5py.File(path, "r") as f:
        g = f["model"]
        for key, p in model.named_parameters():
            if not np.array_equal(p.detach().cpu().numpy(), g[key][()]):
                print(f"/model/{key} differs after loading into the reference")
                return 1
            n += 1
        if "sigmas" in g:
            if not np.array_equal(model.sigmas.detach().cpu().numpy(), g["sigmas"][()]):
                print("/model/sigmas differ after loading into the reference")
                return 1
    print(f"ncsn_ref.load_model_h5 loaded {n} parameters by key (nf {model.nf}, "
          f"{model.param_count()} values), all equal to the file's")
    return 0


def cmd_usr1_during_write(args):
    """Sends SIGUSR1 to FIRST_PID, waits (up to 30 s) until a temporary file
    appears in RUN_DIR (rank 0 is writing the stop checkpoint) and then sends
    a second SIGUSR1 to WRITER_PID."""
    if len(args) != 3:
        return usage()
    import glob
    import signal
    import time

    first, writer, run_dir = int(args[0]), int(args[1]), args[2]
    pattern = os.path.join(run_dir, "*.tmp.*")
    os.kill(first, signal.SIGUSR1)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        found = glob.glob(pattern)
        if found:
            try:
                os.kill(writer, signal.SIGUSR1)
            except ProcessLookupError:
                print("the writer exited before the second signal")
                return 1
            still = [p for p in found if os.path.exists(p)]
            when = "while" if still else "just after"
            print(f"second SIGUSR1 sent to pid {writer} {when} "
                  f"{os.path.basename(found[0])} was being written")
            return 0
        try:
            os.kill(writer, 0)
        except ProcessLookupError:
            print("no temporary file seen before the writer exited; no second signal sent")
            return 1
        time.sleep(0.0005)
    print("no temporary file appeared within 30 s")
    return 1


def usage():
    print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
    return 2


COMMANDS = {"same": cmd_same, "losses": cmd_losses, "valid": cmd_valid, "step": cmd_step,
            "flip": cmd_flip, "refload": cmd_refload, "usr1-during-write": cmd_usr1_during_write}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        return usage()
    return COMMANDS[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
