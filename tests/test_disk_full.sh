#!/bin/bash
# test_disk_full.sh: a full disk while writing (issue 14, item 4).
#
#   tests/test_disk_full.sh NCSN_BIN SOURCE_DIR
#
# On a tmpfs just large enough for one checkpoint of a tiny model (nf 8,
# 8x8, checkpoints every step):
#   1. training fails at the second checkpoint with exit 1 (not a crash)
#      and one message naming ckpt-00000002.h5 and "No space left on
#      device"; ckpt-00000001.h5 stays complete (every dataset reads back,
#      step 1), latest.h5 still points to it, no temporary file is left;
#      copied to a disk with room, the run resumes from it and ends bitwise
#      equal to an uninterrupted run;
#   2. the same on 2 ranks (rank 0 writes; the job stops with a failure);
#   3. ncsn sample on the full disk: --out and --png each fail naming the
#      file and the reason, leaving no file behind.
#
# Needs to mount a tmpfs (root, and a mount namespace that allows it):
# exit 77 (skip) when that is refused. Exit 0 pass, 1 fail. Environment:
# MPI_LAUNCH (default "mpiexec --oversubscribe -n"), PYTHON.
set -u
src=$2
. "$(dirname "$0")/preamble.sh"

tmp=$(mktemp -d)
mnt=$tmp/full
mkdir -p "$mnt"
trap 'umount "$mnt" 2>/dev/null; rm -rf "$tmp"' EXIT
failed=0
ok()  { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; failed=1; }
show() { tail -n "${2:-8}" "$1" 2>/dev/null | sed 's/^/    | /'; }
helper() { "$py" "$src/tests/ckpt_compare.py" "$@"; }

data=$tmp/d.h5
"$py" -c 'import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = np.random.default_rng(4).integers(0, 256, (32, 8, 8), dtype=np.uint8)' "$data" || exit 1
args=(--data "$data" --in-channels 1 --nf 8 --num-classes 3 --sigmas 1,0.5,0.1 --batch 4 --seed 2 --ckpt-every 1 --keep 5)

# The reference: 3 steps uninterrupted; its checkpoint size sets the tmpfs size.
"$bin" train "${args[@]}" --run-dir "$tmp/ref" --steps 3 >"$tmp/ref.out" 2>&1 || { bad "reference run failed"; show "$tmp/ref.out"; exit 1; }
size=$(stat -c %s "$tmp/ref/ckpt-00000001.h5")
kb=$((size * 3 / 2 / 1024))
if ! mount -t tmpfs -o "size=${kb}k" tmpfs "$mnt" 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (needs root in a namespace that allows mounts)"
    exit 77
fi

# full_run NAME [LAUNCHER...]: training into $mnt/NAME fails at checkpoint 2
full_run() {
    local name=$1 rc lines
    shift
    "$@" "$bin" train "${args[@]}" --run-dir "$mnt/$name" --steps 3 >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
    local ck1=$mnt/$name/ckpt-00000001.h5 want="$mnt/$name/ckpt-00000002.h5"
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then
        bad "$name: exit $rc, expected a failure status (1), not success or a signal"; show "$tmp/$name.err"
    elif ! grep -q "^\[rank 0\] .*$want.*: No space left on device" "$tmp/$name.err"; then
        bad "$name: no message naming $want and 'No space left on device'"; show "$tmp/$name.err"
    elif [ "$(grep -c 'No space left' "$tmp/$name.err")" -ne 1 ]; then
        bad "$name: the reason is reported more than once"; show "$tmp/$name.err"
    elif [ "$(helper step "$ck1" 2>&1)" != 1 ] || ! helper valid "$ck1" >"$tmp/$name.valid" 2>&1; then
        bad "$name: ckpt-00000001.h5 is not a complete checkpoint of step 1"; show "$tmp/$name.valid"
    elif [ "$(readlink "$mnt/$name/latest.h5")" != ckpt-00000001.h5 ]; then
        bad "$name: latest.h5 -> $(readlink "$mnt/$name/latest.h5"), expected ckpt-00000001.h5"
    elif compgen -G "$mnt/$name/*.tmp.*" >/dev/null || [ -e "$want" ]; then
        bad "$name: files left behind: $(ls "$mnt/$name")"
    else
        ok "$name: exit $rc, $(grep 'No space' "$tmp/$name.err" | sed "s|$tmp/||g; s|^\[rank 0\] [^ ]* ||"); ckpt-00000001.h5 complete (step 1), latest.h5 -> it, no temporary file left"
        return 0
    fi
    return 1
}

if full_run one; then
    # The surviving checkpoint resumes to the uninterrupted result.
    cp -a "$mnt/one" "$tmp/one-resumed"
    if "$bin" train "${args[@]}" --run-dir "$tmp/one-resumed" --steps 3 >"$tmp/resume.out" 2>&1 &&
       grep -q "resuming from .*ckpt-00000001.h5 at step 1" "$tmp/resume.out" &&
       helper same "$tmp/ref/ckpt-00000003.h5" "$tmp/one-resumed/ckpt-00000003.h5" model optim/adam_m optim/adam_v >"$tmp/resume.cmp"; then
        ok "one: resumed from ckpt-00000001.h5 on a disk with room: step 3 bitwise equal to the uninterrupted run"
    else
        bad "one: the resume from the surviving checkpoint failed or differs"; show "$tmp/resume.out"; show "$tmp/resume.cmp"
    fi
fi
rm -rf "${mnt:?}/one"
full_run two "${launch[@]}" 2
rm -rf "${mnt:?}/two"

# Fill the disk, then sample onto it.
dd if=/dev/zero of="$mnt/fill" bs=64k 2>/dev/null
"$bin" sample --model "$tmp/ref/model.h5" --out "$mnt/s.h5" --n 4 --image-size 8 --steps-each 1 >"$tmp/s.out" 2>"$tmp/s.err"
rc=$?
if [ $rc -ne 0 ] && grep -q "$mnt/s.h5.*No space left on device" "$tmp/s.err" && ! compgen -G "$mnt/s.h5*" >/dev/null; then
    ok "sample --out on a full disk: exit $rc, $(sed "s|$tmp/||g" "$tmp/s.err" | grep 'No space'), nothing left"
else
    bad "sample --out on a full disk: exit $rc, wanted a message naming s.h5 and 'No space left on device' and no file"
    show "$tmp/s.err"; ls "$mnt" | sed 's/^/    | /'
fi
"$bin" sample --model "$tmp/ref/model.h5" --out "$tmp/s.h5" --png "$mnt/s.png" --n 4 --image-size 8 --steps-each 1 >"$tmp/p.out" 2>"$tmp/p.err"
rc=$?
if [ $rc -ne 0 ] && grep -q "$mnt/s.png: No space left on device" "$tmp/p.err" && [ ! -e "$mnt/s.png" ]; then
    ok "sample --png on a full disk: exit $rc, $(sed "s|$tmp/||g" "$tmp/p.err" | grep 'No space'), nothing left"
else
    bad "sample --png on a full disk: exit $rc, wanted a message naming s.png and 'No space left on device' and no file"
    show "$tmp/p.err"; ls "$mnt" | sed 's/^/    | /'
fi

[ $failed -eq 0 ] && echo "disk_full: all checks passed"
exit $failed
