"""philox_ref.py: an independent numpy model of the project's random draws.

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
as 1, 2, 3", SC'11), written from the paper's description, vectorised over
many counters at once, and the two fills that the C code (src/rng.c) builds
on it:

    block(seed, purpose, a, b, index) = Philox4x32-10(counter, key) with
        counter = (index, purpose, a, b), key = (seed mod 2^32, seed >> 32)

    fill_uniform(n, ..., lo, hi): element i uses word i % 4 of block i // 4:
        u = w / 2^32 in [0, 1); v = float32(lo + (hi - lo) u) (in double);
        v >= hi (rounding) gives lo.

    fill_normal(n, ...): the pair (i, i + 1), i even, uses words i % 4 and
        i % 4 + 1 of block i // 4: u1 = (w0 + 1) / 2^32, u2 = (w1 + 1) / 2^32
        (both in (0, 1]), r = sqrt(-2 ln u1), t = 2 pi u2,
        z_i = float32(r cos t), z_{i+1} = float32(r sin t) (dropped if n is odd).

The transcendental functions run in float64 (numpy's, not necessarily
correctly rounded), so a normal draw may differ from the C one by one float32
ulp in rare cases; compare draws with a tolerance of a few ulps, not bitwise.

Run as a script, it checks the Random123 known-answer vectors and exits 0/1
(77 without numpy).
"""

import sys

try:
    import numpy as np
except ImportError as e:  # run as a test: a missing optional tool is a skip
    if __name__ == "__main__":
        print(f"SKIP: philox_ref needs numpy for {sys.executable}: {e}")
        sys.exit(77)
    raise

# Round multipliers and Weyl key increments (Random123's constants: the
# multipliers from the paper, the increments are the golden ratio and
# sqrt(3) - 1 in 32-bit fixed point).
MUL0 = np.uint64(0xD2511F53)
MUL1 = np.uint64(0xCD9E8D57)
WEYL0 = 0x9E3779B9
WEYL1 = 0xBB67AE85
ROUNDS = 10
MASK32 = np.uint64(0xFFFFFFFF)
TWO32 = 4294967296.0

# Purposes (include/ncsn/rng.h).
SAMPLE_INIT = 5
LANGEVIN = 6
INPAINT = 8


def philox4x32(counters, key):
    """counters: uint32 array [..., 4]; key: (k0, k1) ints. Returns uint32 [..., 4].

    One round, on words (x0, x1, x2, x3) and round key (k0, k1):
        p = M0 * x0 (64-bit), q = M1 * x2 (64-bit)
        x' = (hi(q) ^ x1 ^ k0, lo(q), hi(p) ^ x3 ^ k1, lo(p))
    and the key advances by the Weyl increments between rounds.
    """
    c = np.asarray(counters, dtype=np.uint32).astype(np.uint64)
    x0, x1, x2, x3 = (c[..., j] for j in range(4))
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for r in range(ROUNDS):
        if r > 0:
            k0 = (k0 + WEYL0) & 0xFFFFFFFF
            k1 = (k1 + WEYL1) & 0xFFFFFFFF
        p = MUL0 * x0              # < 2^64: exact in uint64
        q = MUL1 * x2
        x0, x1, x2, x3 = ((q >> np.uint64(32)) ^ x1 ^ np.uint64(k0), q & MASK32,
                          (p >> np.uint64(32)) ^ x3 ^ np.uint64(k1), p & MASK32)
    return np.stack([x0, x1, x2, x3], axis=-1).astype(np.uint32)


def seed_key(seed):
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return (seed & 0xFFFFFFFF, seed >> 32)


def blocks(seed, purpose, a, b, nblocks):
    """The words of blocks 0 .. nblocks-1 of stream (seed, purpose, a, b), flat [4 nblocks]."""
    ctr = np.zeros((nblocks, 4), dtype=np.uint32)
    ctr[:, 0] = np.arange(nblocks, dtype=np.uint64).astype(np.uint32)
    ctr[:, 1] = purpose
    ctr[:, 2] = a
    ctr[:, 3] = b
    return philox4x32(ctr, seed_key(seed)).reshape(-1)


def fill_uniform(n, seed, purpose, a, b, lo=-1.0, hi=1.0):
    """n float32 values in [lo, hi) (see the module comment)."""
    w = blocks(seed, purpose, a, b, (n + 3) // 4)[:n]
    u = w.astype(np.float64) / TWO32
    lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
    v = (lo32 + (hi32 - lo32) * u).astype(np.float32)
    return np.where(v >= np.float32(hi32), np.float32(lo32), v).astype(np.float32)


def fill_normal(n, seed, purpose, a, b):
    """n float32 standard normal values by Box-Muller (see the module comment)."""
    m = n + (n & 1)                                   # whole pairs
    w = blocks(seed, purpose, a, b, (m + 3) // 4)[:m].reshape(-1, 2)
    u1 = (w[:, 0].astype(np.float64) + 1.0) / TWO32
    u2 = (w[:, 1].astype(np.float64) + 1.0) / TWO32
    r = np.sqrt(-2.0 * np.log(u1))
    t = 2.0 * np.pi * u2
    z = np.empty((m // 2, 2), dtype=np.float64)
    z[:, 0] = r * np.cos(t)
    z[:, 1] = r * np.sin(t)
    return z.reshape(-1)[:n].astype(np.float32)


# Random123's published known-answer vectors for philox4x32_R(10, ctr, key).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def selftest():
    ok = True
    for ctr, key, want in KAT:
        got = tuple(int(v) for v in philox4x32(np.array([ctr], dtype=np.uint32), key)[0])
        good = got == want
        ok &= good
        print("philox4x32-10 ctr %s key %s -> %s %s" % (
            " ".join("%08x" % v for v in ctr), " ".join("%08x" % v for v in key),
            " ".join("%08x" % v for v in got), "ok" if good else "FAIL"))
    # The vectorised path gives the same words as one counter at a time.
    many = blocks(123456789012345, LANGEVIN, 7, 9, 64).reshape(-1, 4)
    one = philox4x32(np.array([[5, LANGEVIN, 7, 9]], dtype=np.uint32), seed_key(123456789012345))[0]
    good = np.array_equal(many[5], one)
    ok &= good
    print("vectorised block 5 == single block: %s" % ("ok" if good else "FAIL"))
    z = fill_normal(100001, 42, 3, 3, 7).astype(np.float64)
    good = abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.02
    ok &= good
    print("normal mean %.4f var %.4f %s" % (z.mean(), z.var(), "ok" if good else "FAIL"))
    u = fill_uniform(100000, 42, SAMPLE_INIT, 0, 1)
    good = u.min() >= -1 and u.max() < 1 and u.min() < -0.999 and u.max() > 0.999
    ok &= good
    print("uniform range [%.5f, %.5f] %s" % (u.min(), u.max(), "ok" if good else "FAIL"))
    return ok


if __name__ == "__main__":
    sys.exit(0 if selftest() else 1)
