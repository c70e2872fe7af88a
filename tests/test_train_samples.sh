#!/bin/bash
# test_train_samples.sh: pictures and a quality number while training
# (`ncsn train --sample-every K [--eval-data FILE]`).
#
#   tests/test_train_samples.sh NCSN_BIN SOURCE_DIR
#
# On a tiny model (nf 8, 1 channel, 8x8 Fashion-MNIST, 4 levels, batch 8):
#   1. a 2-rank run with --ema --sample-every 3 over 9 steps writes
#      samples/step-00000003/6/9.png and .h5 and nothing else; the PNGs are
#      3 x 2 grids of 8x8 images; each .h5 equals, bitwise, `ncsn sample
#      --ema` (one process) on the checkpoint of that step with the same
#      settings and seed; its final checkpoint equals, bitwise (weights,
#      Adam moments, EMA), that of the same run without --sample-every;
#   2. the same without --ema, with --sample-sampler cas --sample-no-clip:
#      equal to `ncsn sample --sampler cas --no-clip` on the checkpoints,
#      and the training equal to a run without --sample-every;
#   3. 1 vs 2 ranks: run 1's directory without step-00000009.h5, run again
#      to step 9 on one process (nothing to train): it samples step 9 again
#      at start-up, bitwise equal to the 2-rank samples;
#   4. --eval-data with a fake evaluator (NCSN_SCRIPTS points at a stub
#      ncsn_eval.py that writes a fixed JSON): the stub gets SAMPLES --data
#      FILE --dataset images --fd --train-data TRAIN --json JSON, and eval.csv
#      has the header and one row per sampled step with the JSON's numbers;
#   5. resume: SIGUSR1 to rank 1 of a 20-step run (--sample-every 5 and the
#      fake evaluator) gives exit 3; the resumed run ends with eval.csv rows
#      5, 10, 15, 20 once each, exactly those PNGs and .h5 files, all equal
#      to an uninterrupted run's, and the same final checkpoint; then a
#      resume from an older checkpoint (ckpt 20 removed) drops the later rows
#      and files and writes them again, equal, and evaluates step 15 again
#      at start-up when its eval.csv row is missing;
#   6. a failing evaluator (exit status 5 at step 10, a JSON with "fd": null
#      at step 15): a warning naming the step and the status, the run
#      finishes (exit 0), and eval.csv holds the other steps;
#   7. refused with exit 2 before the first step (no metrics rows, no
#      checkpoint): a missing script (2 ranks), a missing interpreter
#      (NCSN_PYTHON), a script without --fd, --eval-data without
#      --sample-every, training data without /labels, held-out images of
#      another size; and --sample-every -1, --sample-n 0, --sample-step-lr
#      nan / inf / x, --sample-steps-each 0, --sample-sampler cas with
#      --sample-steps-each 2 or a step outside its bounds.
#
# Exit 0 pass, 1 fail, 77 skip (python3-h5py/numpy/torch or Fashion-MNIST
# missing). Environment: MPI_LAUNCH (default "mpiexec --oversubscribe -n";
# the rank count is appended), PYTHON (default /usr/bin/python3),
# NCSN_TEST_KEEP=1 keeps the scratch directory.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 NCSN_BIN SOURCE_DIR" >&2
    exit 2
fi
bin=$(readlink -f "$1")
src=$(cd "$2" && pwd) || { echo "FAIL: no source dir $2"; exit 1; }
[ -x "$bin" ] || { echo "FAIL: $1 is not an executable"; exit 1; }
py=${PYTHON:-/usr/bin/python3}
read -r -a launch <<<"${MPI_LAUNCH:-mpiexec --oversubscribe -n}"
fm=/usr/share/datasets/fashion-mnist

# The evaluator's start-up check imports torch with the default interpreter.
if ! "$py" -c 'import h5py, numpy, torch' 2>/dev/null; then
    echo "SKIP: python3-h5py, python3-numpy or python3-torch not installed"
    exit 77
fi
if [ ! -f "$fm/train-images-idx3-ubyte.gz" ] || [ ! -f "$fm/t10k-images-idx3-ubyte.gz" ]; then
    echo "SKIP: Fashion-MNIST (dataset-fashion-mnist) not found under $fm"
    exit 77
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HDF5_USE_FILE_LOCKING=FALSE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
unset NCSN_SCRIPTS NCSN_PYTHON

tmp=$(mktemp -d)
tracked=()
cleanup() {
    local p
    for p in "${tracked[@]}"; do kill -KILL "$p" 2>/dev/null; done
    if [ "${NCSN_TEST_KEEP:-0}" = 1 ]; then echo "scratch dir: $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
t_start=$SECONDS

passed=0
failed=0
ok()      { echo "ok   - $*"; passed=$((passed + 1)); }
bad()     { echo "FAIL - $*"; failed=$((failed + 1)); }
section() { echo "# $* (at $((SECONDS - t_start)) s)"; }
show()    { tail -n "${2:-8}" "$1" 2>/dev/null | sed 's/^/    | /'; }
ck()      { printf '%s/ckpt-%08d.h5' "$1" "$2"; }
sp()      { printf '%s/samples/step-%08d.%s' "$1" "$2" "$3"; }

# ---- data ----
data=$tmp/fm8.h5 held=$tmp/held8.h5
"$py" "$src/scripts/ncsn_convert.py" --format idx "$fm/train-images-idx3-ubyte.gz" --labels --out "$data" \
    --size 8 --limit 256 >"$tmp/convert.log" 2>&1 &&
"$py" "$src/scripts/ncsn_convert.py" --format idx "$fm/t10k-images-idx3-ubyte.gz" --labels --out "$held" \
    --size 8 --limit 100 >>"$tmp/convert.log" 2>&1 &&
"$py" "$src/scripts/ncsn_convert.py" --format idx "$fm/train-images-idx3-ubyte.gz" --out "$tmp/nolabels.h5" \
    --size 8 --limit 64 >>"$tmp/convert.log" 2>&1 &&
"$py" "$src/scripts/ncsn_convert.py" --format idx "$fm/t10k-images-idx3-ubyte.gz" --labels --out "$tmp/held16.h5" \
    --size 16 --limit 64 >>"$tmp/convert.log" 2>&1 || { echo "FAIL - ncsn_convert.py"; show "$tmp/convert.log"; exit 1; }

# ---- the fake evaluators: NCSN_SCRIPTS=$tmp/<name> ----
# good: writes a JSON like ncsn_eval.py --json, "fd" = step + 0.5, and logs its arguments
# bad:  like good, but exit 5 at step 10 and "fd": null at step 15
# nohelp: a script whose --help does not offer --fd
for name in good bad nohelp; do
    mkdir -p "$tmp/$name"
    cat >"$tmp/$name/ncsn_eval.py" <<EOF
import json, os, re, sys
import h5py
args = sys.argv[1:]
if "--help" in args:
    print("usage: ncsn_eval.py SAMPLES --data HELDOUT.h5" +
          ("" if "$name" == "nohelp" else " [--fd] [--train-data TRAIN.h5] [--json PATH]"))
    sys.exit(0)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.txt"), "a") as f:
    f.write(" ".join(args) + "\n")
samples = args[0]
n = h5py.File(samples, "r")["samples"].shape[0]  # a complete file
step = int(re.search(r"step-(\d+)\.h5$", samples).group(1))
print(f"stub: {samples} at step {step}, {n} samples")
if "$name" == "bad" and step == 10:
    sys.exit(5)
fd = None if ("$name" == "bad" and step == 15) else step + 0.5
out = {"samples": samples, "fd": fd, "fd_real": 0.25, "fd_score": 1.5, "fd_coverage": 7,
       "fd_n_classes": 10, "fd_hist": [1, 2, 3], "nn_ratio": 9.0, "fd_cache_hit": True}
json.dump(out, open(args[args.index("--json") + 1], "w"), indent=1, sort_keys=True)
EOF
done

model=(--data "$data" --in-channels 1 --nf 8 --num-classes 4 --sigmas 1,0.5,0.2,0.1 --batch 8 --lr 1e-4 --seed 11)
pics=(--sample-n 6 --sample-steps-each 2 --sample-step-lr 1e-3)
# the same samples with ncsn sample: --seed of the run, denoised, 8x8
again=(--n 6 --image-size 8 --steps-each 2 --step-lr 1e-3 --seed 11 --denoise)
mpi2=("${launch[@]}" 2 -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x HDF5_USE_FILE_LOCKING)

# run N LOG ARGS...: `ncsn train` on N ranks (1: a plain process); exit status in $rc
run() {
    local n=$1 log=$2
    shift 2
    if [ "$n" = 1 ]; then
        timeout 300 "$bin" train "${model[@]}" "$@" >"$log.out" 2>"$log.err"
    else
        timeout 300 "${mpi2[@]}" "$bin" train "${model[@]}" "$@" >"$log.out" 2>"$log.err"
    fi
    rc=$?
    return $rc
}
# same_samples A.h5 B.h5: /samples bitwise equal, and the sampler settings too
same_samples() {
    "$py" - "$1" "$2" <<'EOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["samples"] for p in sys.argv[1:3])
x, y = a[()], b[()]
if x.shape != y.shape or not np.array_equal(x, y):
    print(f"{sys.argv[1]} vs {sys.argv[2]}: shapes {x.shape} {y.shape}, "
          f"max |diff| {np.abs(x - y).max() if x.shape == y.shape else 'n/a'}")
    sys.exit(1)
for k in ("sampler", "steps_each", "step_lr", "clip", "denoise", "seed_text", "weights", "init", "sigmas"):
    if not np.array_equal(np.asarray(a.attrs.get(k)), np.asarray(b.attrs.get(k))):
        print(f"attribute {k}: {a.attrs.get(k)!r} vs {b.attrs.get(k)!r}")
        sys.exit(1)
EOF
}
# png_size FILE: "WIDTH HEIGHT COLOUR_TYPE" from the IHDR chunk
png_size() {
    "$py" -c 'import struct, sys
d = open(sys.argv[1], "rb").read(26)
assert d[:8] == b"\x89PNG\r\n\x1a\n" and d[12:16] == b"IHDR"
w, h = struct.unpack(">II", d[16:24]); print(w, h, d[25])' "$1" 2>/dev/null
}
# files_in RUN_DIR: the names in RUN_DIR/samples, one line
files_in() { (cd "$1/samples" 2>/dev/null && LC_ALL=C ls | tr '\n' ' '); }
# same_ckpt A B: weights, Adam moments (and EMA when present) bitwise equal
same_ckpt() { "$py" "$src/tests/ckpt_compare.py" same "$@"; }

echo "ncsn: $bin"
echo "scratch: $tmp"

# ======================================================================
section "1. 2 ranks, --ema: files, equal to ncsn sample --ema, training unchanged"
r1=$tmp/r1
if ! run 2 "$tmp/r1" --run-dir "$r1" --steps 9 --ckpt-every 3 --ema 0.9 --sample-every 3 "${pics[@]}"; then
    bad "1: training with --sample-every 3 (exit $rc)"; show "$tmp/r1.err"
else
    want="step-00000003.h5 step-00000003.png step-00000006.h5 step-00000006.png step-00000009.h5 step-00000009.png "
    [ "$(files_in "$r1")" = "$want" ] && ok "1: samples/ holds $want" ||
        bad "1: samples/ holds '$(files_in "$r1")', expected '$want'"
    size=$(png_size "$(sp "$r1" 9 png)")
    # 3 columns (ceil(sqrt(6))) x 2 rows of 8x8 images with 1-pixel gaps, grey
    [ "$size" = "28 19 0" ] && ok "1: step-00000009.png is a 28 x 19 grey grid" ||
        bad "1: step-00000009.png: size/colour '$size', expected '28 19 0'"
    for k in 3 6 9; do
        "$bin" sample --model "$(ck "$r1" $k)" --ema --out "$tmp/s1-$k.h5" "${again[@]}" >"$tmp/s1-$k.log" 2>&1 ||
            { bad "1: ncsn sample on ckpt $k"; show "$tmp/s1-$k.log"; continue; }
        same_samples "$(sp "$r1" $k h5)" "$tmp/s1-$k.h5" >"$tmp/s1-$k.cmp" &&
            ok "1: step $k: the training's samples (2 ranks) == ncsn sample --ema on ckpt $k (1 process), bitwise" ||
            { bad "1: step $k: samples differ from ncsn sample --ema"; show "$tmp/s1-$k.cmp"; }
    done
    if ! run 2 "$tmp/r1plain" --run-dir "$tmp/r1plain" --steps 9 --ckpt-every 3 --ema 0.9; then
        bad "1: the run without --sample-every (exit $rc)"; show "$tmp/r1plain.err"
    elif same_ckpt "$(ck "$r1" 9)" "$(ck "$tmp/r1plain" 9)" >"$tmp/r1.cmp"; then
        ok "1: final checkpoint == the run without --sample-every ($(head -n1 "$tmp/r1.cmp"))"
    else
        bad "1: --sample-every changed the training"; show "$tmp/r1.cmp"
    fi
fi

# ======================================================================
section "2. no EMA, --sample-sampler cas --sample-no-clip"
r2=$tmp/r2
cas=(--sample-sampler cas --sample-step-lr 0.008 --sample-no-clip --sample-n 6)
if ! run 2 "$tmp/r2" --run-dir "$r2" --steps 6 --ckpt-every 3 --sample-every 3 "${cas[@]}"; then
    bad "2: training with cas pictures (exit $rc)"; show "$tmp/r2.err"
else
    for k in 3 6; do
        "$bin" sample --model "$(ck "$r2" $k)" --out "$tmp/s2-$k.h5" --n 6 --image-size 8 --sampler cas \
            --step-lr 0.008 --no-clip --denoise --seed 11 >"$tmp/s2-$k.log" 2>&1 ||
            { bad "2: ncsn sample --sampler cas on ckpt $k"; show "$tmp/s2-$k.log"; continue; }
        same_samples "$(sp "$r2" $k h5)" "$tmp/s2-$k.h5" >"$tmp/s2-$k.cmp" &&
            ok "2: step $k: == ncsn sample --sampler cas --no-clip on ckpt $k (current weights), bitwise" ||
            { bad "2: step $k: samples differ from ncsn sample --sampler cas"; show "$tmp/s2-$k.cmp"; }
    done
    if ! run 2 "$tmp/r2plain" --run-dir "$tmp/r2plain" --steps 6 --ckpt-every 3; then
        bad "2: the run without --sample-every (exit $rc)"; show "$tmp/r2plain.err"
    elif same_ckpt "$(ck "$r2" 6)" "$(ck "$tmp/r2plain" 6)" model optim/adam_m optim/adam_v >"$tmp/r2.cmp"; then
        ok "2: final checkpoint == the run without --sample-every ($(head -n1 "$tmp/r2.cmp"))"
    else
        bad "2: --sample-every changed the training"; show "$tmp/r2.cmp"
    fi
fi

# ======================================================================
section "3. 1 vs 2 ranks: the step-9 samples again, on one process"
if [ -f "$(sp "$r1" 9 h5)" ]; then
    cp -a "$r1" "$tmp/r3"
    rm "$(sp "$tmp/r3" 9 h5)" "$(sp "$tmp/r3" 9 png)"
    if ! run 1 "$tmp/r3" --run-dir "$tmp/r3" --steps 9 --ckpt-every 3 --ema 0.9 --sample-every 3 "${pics[@]}"; then
        bad "3: resume at step 9 on one process (exit $rc)"; show "$tmp/r3.err"
    elif ! grep -q "samples at step 9" "$tmp/r3.out"; then
        bad "3: the missing samples of step 9 were not made at start-up"; show "$tmp/r3.out"
    elif same_samples "$(sp "$tmp/r3" 9 h5)" "$(sp "$r1" 9 h5)" >"$tmp/r3.cmp" &&
         cmp -s "$(sp "$tmp/r3" 9 png)" "$(sp "$r1" 9 png)"; then
        ok "3: samples of step 9 on 1 process == on 2 ranks (h5 bitwise, PNG byte for byte)"
    else
        bad "3: 1 process and 2 ranks give different samples"; show "$tmp/r3.cmp"
    fi
fi

# ======================================================================
section "4. --eval-data with a fake evaluator"
r4=$tmp/r4
if ! NCSN_SCRIPTS=$tmp/good run 2 "$tmp/r4" --run-dir "$r4" --steps 6 --ckpt-every 3 --ema 0.9 \
        --sample-every 3 "${pics[@]}" --eval-data "$held"; then
    bad "4: training with --eval-data (exit $rc)"; show "$tmp/r4.err"
else
    want="step,fd,fd_floor,classifier_score,classes_5pct,n_classes
3,3.5,0.25,1.5,7,10
6,6.5,0.25,1.5,7,10"
    [ "$(cat "$r4/eval.csv")" = "$want" ] && ok "4: eval.csv: header and the JSON's numbers for steps 3 and 6" ||
        { bad "4: eval.csv is not as expected"; show "$r4/eval.csv"; }
    call="$(sp "$r4" 3 h5) --data $held --dataset images --fd --train-data $data --json $(sp "$r4" 3 json)"
    [ "$(head -n1 "$tmp/good/calls.txt")" = "$call" ] && ok "4: the evaluator is called as: ncsn_eval.py SAMPLES --data FILE --dataset images --fd --train-data TRAIN --json JSON" ||
        { bad "4: evaluator arguments"; echo "    got:      $(head -n1 "$tmp/good/calls.txt")"; echo "    expected: $call"; }
    grep -q "eval at step 6: fd 6.5 (real images 0.25), classifier score 1.5, classes >= 5%: 7/10" "$tmp/r4.out" &&
        ok "4: one printed line per evaluation ($(grep -m1 'eval at step' "$tmp/r4.out"))" ||
        { bad "4: no 'eval at step 6' line"; show "$tmp/r4.out"; }
    [ -s "$(sp "$r4" 6 log)" ] && grep -q "stub: " "$(sp "$r4" 6 log)" && ok "4: the evaluator's output is in samples/step-00000006.log" ||
        bad "4: no evaluator output in $(sp "$r4" 6 log)"
fi

# ======================================================================
section "5. resume after SIGUSR1, and from an older checkpoint"
long=(--steps 20 --ckpt-every 5 --ema 0.9 --sample-every 5 "${pics[@]}" --eval-data "$held" --log-every 1)
export NCSN_SCRIPTS=$tmp/good
if ! run 2 "$tmp/r5ref" --run-dir "$tmp/r5ref" "${long[@]}"; then
    bad "5: the uninterrupted run (exit $rc)"; show "$tmp/r5ref.err"
fi
r5=$tmp/r5
"${mpi2[@]}" -x NCSN_SCRIPTS "$bin" train "${model[@]}" --run-dir "$r5" "${long[@]}" >"$tmp/r5a.out" 2>"$tmp/r5a.err" &
mp=$!
tracked+=("$mp")
for ((i = 0; i < 3000; i++)); do  # until metrics.csv shows 3 steps (60 s at most)
    [ -f "$r5/metrics.csv" ] && [ "$(wc -l <"$r5/metrics.csv")" -ge 4 ] && break
    sleep 0.02
done
rank1=""
for p in $(pgrep -P "$mp"); do
    grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$p/environ" 2>/dev/null && rank1=$p
done
if [ -z "$rank1" ]; then
    bad "5: rank 1 not found under mpirun $mp"
else
    kill -USR1 "$rank1"
fi
wait "$mp"
rc=$?
at=$(sed -n 's/.*writing a checkpoint at step \([0-9]*\).*/\1/p' "$tmp/r5a.out")
if [ $rc -ne 3 ] || [ -z "$at" ]; then
    bad "5: SIGUSR1: exit $rc, expected 3"; show "$tmp/r5a.out" 4; show "$tmp/r5a.err"
else
    ok "5: SIGUSR1 to rank 1: exit 3 at step $at (eval.csv then: $(tail -n +2 "$r5/eval.csv" 2>/dev/null | cut -d, -f1 | tr '\n' ' '))"
    # consistent RUN_DIR: eval.csv steps 5, 10, ... once each, the files of exactly those steps, equal to the reference run
    check_run() {
        local dir=$1 what=$2 steps="" names="" k bad_k=""
        for ((k = 5; k <= 20; k += 5)); do
            steps+="$k "
            names+="$(printf 'step-%08d.h5 step-%08d.json step-%08d.log step-%08d.png ' $k $k $k $k)"
            same_samples "$(sp "$dir" $k h5)" "$(sp "$tmp/r5ref" $k h5)" >/dev/null &&
                cmp -s "$(sp "$dir" $k png)" "$(sp "$tmp/r5ref" $k png)" || bad_k+="$k "
        done
        local have
        have=$(tail -n +2 "$dir/eval.csv" | cut -d, -f1 | tr '\n' ' ')
        if [ "$have" != "$steps" ] || [ "$(head -n1 "$dir/eval.csv")" != "step,fd,fd_floor,classifier_score,classes_5pct,n_classes" ]; then
            bad "5: $what: eval.csv steps '$have', expected '$steps' after one header"
        elif ! cmp -s "$dir/eval.csv" "$tmp/r5ref/eval.csv"; then
            bad "5: $what: eval.csv differs from the uninterrupted run's"
        elif [ "$(files_in "$dir")" != "$names" ]; then
            bad "5: $what: samples/ holds '$(files_in "$dir")'"
        elif [ -n "$bad_k" ]; then
            bad "5: $what: samples of steps $bad_k differ from the uninterrupted run's"
        elif ! same_ckpt "$(ck "$dir" 20)" "$(ck "$tmp/r5ref" 20)" >"$tmp/r5.cmp"; then
            bad "5: $what: final checkpoint differs from the uninterrupted run's"; show "$tmp/r5.cmp"
        else
            ok "5: $what: eval.csv rows $steps once each, PNG/h5/json of exactly those steps, all equal to the uninterrupted run's; same final checkpoint"
        fi
    }
    if ! run 2 "$tmp/r5b" --run-dir "$r5" "${long[@]}"; then
        bad "5: resume after the stop (exit $rc)"; show "$tmp/r5b.err"
    else
        check_run "$r5" "stopped at $at and resumed"
    fi
    # An older checkpoint: the rows and files after step 15 belong to a part
    # being redone; and without the row of step 15 itself, that step is
    # evaluated again before the first step.
    rm "$(ck "$r5" 20)"
    sed -i '/^15,/d' "$r5/eval.csv"
    if ! run 2 "$tmp/r5c" --run-dir "$r5" "${long[@]}"; then
        bad "5: resume from ckpt 15 (exit $rc)"; show "$tmp/r5c.err"
    elif ! grep -q "resuming from $(ck "$r5" 15) at step 15" "$tmp/r5c.out"; then
        bad "5: did not resume from step 15"; show "$tmp/r5c.out"
    elif ! grep -q "eval at step 15" "$tmp/r5c.out"; then
        bad "5: the missing eval.csv row of step 15 was not made at start-up"; show "$tmp/r5c.out"
    else
        check_run "$r5" "resumed from ckpt 15, samples up to 20 present, row 15 missing"
    fi
fi

# ======================================================================
section "6. a failing evaluator"
export NCSN_SCRIPTS=$tmp/bad
if ! run 2 "$tmp/r6" --run-dir "$tmp/r6" --steps 20 --ckpt-every 0 --sample-every 5 "${pics[@]}" --eval-data "$held"; then
    bad "6: the run did not finish (exit $rc)"; show "$tmp/r6.err"
else
    have=$(tail -n +2 "$tmp/r6/eval.csv" | cut -d, -f1 | tr '\n' ' ')
    if ! grep -q "warning: evaluation at step 10: .*exit status 5" "$tmp/r6.err"; then
        bad "6: no warning naming step 10 and exit status 5"; show "$tmp/r6.err"
    elif ! grep -q "warning: evaluation at step 15: .*no number \"fd\"" "$tmp/r6.err"; then
        bad "6: no warning about the JSON of step 15"; show "$tmp/r6.err"
    elif [ "$have" != "5 20 " ]; then
        bad "6: eval.csv steps '$have', expected '5 20 '"
    else
        ok "6: exit 0; warnings: $(grep -m1 'step 10' "$tmp/r6.err" | sed "s|$tmp/||g"); eval.csv rows 5 and 20"
    fi
fi
unset NCSN_SCRIPTS

# ======================================================================
section "7. refused before the first step"
# refused N TAG MESSAGE_REGEX ARGS...: exit 2, the message, no training
refused() {
    local n=$1 tag=$2 re=$3 dir=$tmp/r7-$2
    shift 3
    run "$n" "$dir" --run-dir "$dir" --steps 3 --sample-every 1 "${pics[@]}" "$@"
    if [ $rc -ne 2 ]; then
        bad "7: $tag: exit $rc, expected 2"; show "$dir.err"
    elif ! grep -qE -- "$re" "$dir.err"; then
        bad "7: $tag: no message matching '$re'"; show "$dir.err"
    elif [ -f "$dir/metrics.csv" ] || compgen -G "$dir/ckpt-*" >/dev/null; then
        bad "7: $tag: exit 2, but it trained (metrics.csv or a checkpoint exists)"
    else
        ok "7: $tag: exit 2 before the first step: $(grep -m1 '^ncsn: ' "$dir.err" | sed "s|$tmp/||g" | cut -c1-150)"
    fi
}
NCSN_SCRIPTS=$tmp/none refused 2 no-script "ncsn_eval.py does not exist" --eval-data "$held"
NCSN_SCRIPTS=$tmp/good NCSN_PYTHON=$tmp/no-python refused 1 no-python "cannot run the interpreter" --eval-data "$held"
NCSN_SCRIPTS=$tmp/nohelp refused 1 no-fd "does not offer --fd" --eval-data "$held"
NCSN_SCRIPTS=$tmp/good refused 1 eval-without-every "give --sample-every" --sample-every 0 --eval-data "$held"
NCSN_SCRIPTS=$tmp/good refused 1 unlabelled "no /labels" --eval-data "$held" --data "$tmp/nolabels.h5"
NCSN_SCRIPTS=$tmp/good refused 1 held-16px "16 x 16" --eval-data "$tmp/held16.h5"
refused 1 every-negative "option --sample-every: must be >= 0" --sample-every -1
refused 1 n-zero "option --sample-n: must be >= 1" --sample-n 0
refused 1 step-lr-nan "option --sample-step-lr: must be positive" --sample-step-lr nan
refused 1 step-lr-inf "option --sample-step-lr: must be positive" --sample-step-lr inf
refused 1 step-lr-text "option --sample-step-lr: expected a number or auto" --sample-step-lr x
refused 1 steps-each-zero "option --sample-steps-each: must be >= 1" --sample-steps-each 0
refused 1 cas-steps-each "option --sample-steps-each: --sample-sampler cas takes one step per noise level" --sample-sampler cas
refused 2 cas-bounds "--sample-sampler cas: --sample-step-lr 0.001 gives eta" --sample-sampler cas --sample-steps-each 1

echo "runtime: $((SECONDS - t_start)) s"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
