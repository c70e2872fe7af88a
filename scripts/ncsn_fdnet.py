"""ncsn_fdnet.py: the feature classifier behind ncsn_eval.py --fd.

ncsn_eval.py measures a Frechet distance in the feature space of a small CNN
classifier that it trains on a labelled dataset file.  This module holds that
classifier: its recipe, its training, its cache and its forward pass.  It is
imported by ncsn_eval.py only when --fd is given, so the rest of the script
runs without PyTorch.

Recipe (RECIPE below; any change to it gives new cache names):
  input     [C, H, W] in [-1, 1], the layout of the dataset file
  conv 3x3 C->32, ReLU, max-pool 2; conv 3x3 32->64, ReLU, max-pool 2;
  conv 3x3 64->64, ReLU; flatten (64 * H/4 * W/4)
  linear -> 64                            the features ("fd_dim" values)
  ReLU, linear -> K logits, K = largest label + 1
The features are taken before the ReLU: after it, units that never fire
(27 of 64 in one training) are constant zeros and the rest are clipped;
before it every unit varies and is closer to the Gaussian the Frechet
distance fits.
  training  a fixed 10 % of the file's images (seed 0) is held out for the
            accuracy; the rest trains for EPOCHS epochs of Adam (lr 1e-3,
            batch 64, cross-entropy) in an order drawn from the same seed.
Runs are repeatable bitwise on one machine and PyTorch build: fixed seeds,
torch.use_deterministic_algorithms, and one thread (also the fastest choice
on small shared machines, where a second thread waits on a busy core).

Cache: the trained classifier is stored beside the training file as
  TRAIN.h5.fdnet-<key>.pt,  key = first 16 hex digits of sha256 over
  (the recipe, the PyTorch version, the image dataset name, the sha256 of
  the file's contents).
A later run with the same file and recipe loads it instead of training.
"""

import hashlib
import json
import os
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RECIPE = {"name": "fdnet", "version": 2, "widths": [32, 64, 64], "features": 64,
          "epochs": 4, "batch": 64, "lr": 1e-3, "seed": 0, "val_percent": 10, "threads": 1}
FORWARD_BATCH = 500  # images per forward pass when computing features


class FdNet(nn.Module):
    """The classifier; features() is the layer the Frechet distance uses."""

    def __init__(self, shape, n_classes):
        super().__init__()
        c, h, w = shape
        w1, w2, w3 = RECIPE["widths"]
        self.conv = nn.Sequential(
            nn.Conv2d(c, w1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.feat = nn.Linear(w3 * (h // 2 // 2) * (w // 2 // 2), RECIPE["features"])
        self.head = nn.Linear(RECIPE["features"], n_classes)

    def features(self, x):  # x [n, C, H, W] -> [n, features], before the ReLU
        return self.feat(self.conv(x))

    def forward(self, x):  # x [n, C, H, W] -> logits [n, K]
        return self.head(F.relu(self.features(x)))


def deterministic():
    """One thread and deterministic kernels, for training and features alike."""
    torch.set_num_threads(RECIPE["threads"])
    torch.use_deterministic_algorithms(True)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(sha, dataset):
    text = json.dumps({"recipe": RECIPE, "torch": torch.__version__,
                       "dataset": dataset.strip("/"), "sha256": sha}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(train_path, key):
    return f"{train_path}.fdnet-{key}.pt"


def train(images, labels, shape):
    """images() -> float32 [M, C, H, W] in [-1, 1]; labels int64 [M].
    Returns the trained network (eval mode) and a dict of what was done."""
    deterministic()
    t0 = time.time()
    x = torch.from_numpy(images())
    y = torch.from_numpy(labels)
    m = len(y)
    rng = np.random.default_rng(RECIPE["seed"])
    perm = rng.permutation(m)
    n_val = max(1, m * RECIPE["val_percent"] // 100)
    val_idx, train_idx = np.sort(perm[:n_val]), perm[n_val:]
    n_classes = int(labels.max()) + 1
    torch.manual_seed(RECIPE["seed"])
    net = FdNet(shape, n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
    b = RECIPE["batch"]
    for _ in range(RECIPE["epochs"]):
        order = torch.from_numpy(rng.permutation(train_idx))
        for i in range(0, len(order), b):
            j = order[i:i + b]
            loss = F.cross_entropy(net(x[j]), y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    _, logp = forward(net, x[torch.from_numpy(val_idx)].numpy())
    accuracy = float(np.mean(logp.argmax(axis=1) == labels[val_idx]))
    info = {"n_classes": n_classes, "n_train": len(train_idx), "n_val": n_val,
            "accuracy": accuracy, "train_seconds": time.time() - t0}
    return net, info


def forward(net, x):
    """x float32 [n, C, H, W] -> (features float64 [n, D], log p(y|x) float64 [n, K])."""
    deterministic()
    feats, logps = [], []
    with torch.no_grad():
        for i in range(0, len(x), FORWARD_BATCH):
            f = net.features(torch.from_numpy(np.ascontiguousarray(x[i:i + FORWARD_BATCH])))
            logit = net.head(F.relu(f))
            feats.append(f.numpy().astype(np.float64))
            logps.append(F.log_softmax(logit.double(), dim=1).numpy())
    return np.concatenate(feats), np.concatenate(logps)


def load_cache(path, key, shape):
    """The cached network and its info, or raises ValueError/OSError/RuntimeError
    saying why it cannot be used."""
    if not zipfile.is_zipfile(path):
        raise ValueError("not a file written by torch.save")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or not isinstance(blob.get("meta"), str):
        raise ValueError("not a classifier cache")
    meta = json.loads(blob["meta"])
    if meta.get("key") != key:
        raise ValueError("made for another file or recipe")
    if list(meta["shape"]) != list(shape):
        raise ValueError(f"it takes images {meta['shape']}, the file holds {list(shape)}")
    net = FdNet(shape, int(meta["info"]["n_classes"]))
    net.load_state_dict(blob["state"])
    net.eval()
    return net, meta["info"]


def save_cache(path, key, shape, net, info):
    """Write the cache under a temporary name and rename it, so a reader never
    sees half a file.  Raises OSError when the directory is not writable.
    Everything but the weights goes in as one JSON string: the weights-only
    loader of PyTorch 1.13 reads tensors and strings but not Python floats."""
    tmp = f"{path}.tmp{os.getpid()}"
    meta = json.dumps({"key": key, "recipe": RECIPE, "shape": list(shape), "info": info})
    try:
        with open(tmp, "wb") as f:  # opened here so that failure is an OSError with a reason
            torch.save({"meta": meta, "state": net.state_dict()}, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_or_train(train_path, dataset, images, labels, shape, prog):
    """The classifier for this training file: from the cache beside it when
    that loads, else trained (and cached when the directory is writable).
    Returns (net, info); info also says where it came from."""
    sha = file_sha256(train_path)
    key = cache_key(sha, dataset)
    path = cache_path(train_path, key)
    if os.path.exists(path):
        try:
            net, info = load_cache(path, key, shape)
            info.update(cache=path, cache_hit=True, key=key, sha256=sha, train_seconds=None)
            return net, info
        except Exception as e:  # any unreadable or foreign file: train again
            why = (str(e).splitlines() or [""])[0][:80]
            print(f"{prog}: warning: classifier cache {path} does not load "
                  f"({type(e).__name__}: {why}); training again", file=sys.stderr)
    net, info = train(images, labels, shape)
    stored = dict(info)
    try:
        save_cache(path, key, shape, net, stored)
        info["cache"] = path
    except OSError as e:
        print(f"{prog}: warning: could not write the classifier cache {path} ({e.strerror or e}); "
              f"the classifier was trained in memory only", file=sys.stderr)
        info["cache"] = None
    info.update(cache_hit=False, key=key, sha256=sha)
    return net, info
