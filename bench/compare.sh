#!/bin/bash
# compare.sh: ncsn-mpi against PyTorch on this machine, side by side.
#
# usage: bench/compare.sh [--quick]
#
# Measures, in one run, the default network (nf 128, 3 x 32 x 32, float32):
#   - a training step at batch 8 (DSM loss, backward, Adam) and a Langevin
#     step at batch 16 (one forward pass and the update), in PyTorch
#     (bench/bench_torch.py on tests/ref/ncsn_ref.py) at 1 and 2 threads, each
#     a separate process, with the malloc settings of DESIGN.md section 7;
#   - the same in ncsn (`ncsn train`, `ncsn sample`) at 1 rank x 1 thread,
#     1 rank x 2 threads and 2 ranks x 1 thread, for these OpenBLAS settings
#     (default: haswell auto):
#       haswell     OPENBLAS_CORETYPE=Haswell (AVX2): what the environment and
#                   CI pin (OPENBLAS_L2_SIZE is passed on as the caller has it)
#       auto        both unset, as a user runs: OpenBLAS 0.3.21 autodetects
#                   this VM's CPU (model 207) as Prescott (SSE3), and ncsn and
#                   bench_net then run themselves again with Cooperlake
#                   (AVX-512) kernels (src/ops/blas_kernels.c)
#       cooperlake  OPENBLAS_CORETYPE=Cooperlake, OPENBLAS_L2_SIZE unset: the
#                   same kernels chosen by hand
#   - bench/bench_net (1 thread, batch 8) for each setting: cblas_sgemm
#     GFLOP/s next to the network's effective GFLOP/s from the same process;
#   - the peak RSS of every process (/usr/bin/time %M; for 2 ranks, each
#     rank's own, and the largest is reported).
#
# Per-step times: PyTorch, the median of the timed steps after the warm-up;
# ncsn train, the median of the wall_s differences in DIR/metrics.csv over the
# steps after the warm-up; ncsn sample with --steps-each 1 runs one Langevin
# step per noise level and prints a line after each level of each
# micro-batch (its default: 4 samples per pass at 1-4 threads), which this
# script timestamps as it arrives: the median time between lines (one level
# of one micro-batch; the first line, after the warm-up, starts the count)
# times the passes per level (lines / 10 levels), and beside it the
# program's own overall rate (10 steps over the sampling loop's X seconds,
# the warm-up included).
# Effective GFLOP/s counts direct-convolution FLOPs (24.78 GFLOP per image
# forward at nf 128; a training step counts 3x).
# CPU% is the process's (user + sys) / wall time: below 100 per thread when
# other programs took the cores, so it shows how loaded the machine was.
#
# --quick: nf 32, 2 timed steps: a smoke test of the whole script (4 minutes
# on a busy machine). The full run took 31 minutes with the load average at
# 3-6 from other jobs; expect roughly 15-20 on an idle machine.
# Environment: NCSN, BENCH_NET (binaries; default build/), PYTHON
# (/usr/bin/python3), COMPARE_BLAS (subset of "haswell cooperlake auto"),
# COMPARE_KEEP=1 keeps the work directory (about 2 GB after a full run: the
# training checkpoints). The binaries are copied into the
# work directory first, so that a rebuild during the run cannot mix versions.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0
for a in "$@"; do
    case $a in
    --quick) QUICK=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$a' (expected --quick)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NCSN_SRC=${NCSN:-$ROOT/build/ncsn}
NET_SRC=${BENCH_NET:-$ROOT/build/bench/bench_net}
PY=${PYTHON:-/usr/bin/python3}
BLAS_SETTINGS=${COMPARE_BLAS:-haswell auto}
for f in "$NCSN_SRC" "$NET_SRC" /usr/bin/time; do
    [ -x "$f" ] || { echo "compare.sh: $f is not an executable (build first)" >&2; exit 1; }
done
command -v mpirun >/dev/null || { echo "compare.sh: mpirun not found" >&2; exit 1; }
"$PY" -c 'import torch, h5py' 2>/dev/null || { echo "compare.sh: $PY cannot import torch and h5py" >&2; exit 1; }

if [ "$QUICK" = 1 ]; then
    NF=32 WARM=1 REPS=2 NET_REPS=1
else
    NF=128 WARM=1 REPS=5 NET_REPS=1
fi
STEPS_EACH=1 # one Langevin step per level: 10 steps, 9 after the warm-up
TRAIN_BATCH=8 SAMPLE_N=16

WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")
if [ "${COMPARE_KEEP:-0}" = 1 ]; then
    trap 'echo "work directory kept: $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/bin" "$WORK/out"
cp "$NCSN_SRC" "$WORK/bin/ncsn"
cp "$NET_SRC" "$WORK/bin/bench_net"
NCSN_BIN=$WORK/bin/ncsn
NET_BIN=$WORK/bin/bench_net
MANIFEST=$WORK/manifest.tsv
: >"$MANIFEST"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HDF5_USE_FILE_LOCKING=FALSE
MALLOC=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736)
TIMEFMT='%M %e %U %S' # peak RSS KB, wall s, user s, sys s
MPIRUN=(mpirun --oversubscribe -np 2)
# Each rank writes its own peak RSS to PREFIX.<rank> (the quotes are sh -c's).
# shellcheck disable=SC2016
RANKRSS=(sh -c 'o=$1; shift; exec /usr/bin/time -f "$0" -o "$o.$OMPI_COMM_WORLD_RANK" "$@"' "$TIMEFMT")

# blas_env NAME: the `env` words of an OpenBLAS setting; blas_x NAME: mpirun -x words.
blas_env() {
    case $1 in
    haswell) BLAS_ENV=(env OPENBLAS_CORETYPE=Haswell) ;;
    cooperlake) BLAS_ENV=(env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Cooperlake) ;;
    auto) BLAS_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) ;;
    *) echo "compare.sh: unknown OpenBLAS setting '$1' (haswell, cooperlake, auto)" >&2; exit 2 ;;
    esac
    BLAS_X=()
    if [ "$1" != auto ]; then
        BLAS_X=(-x OPENBLAS_CORETYPE)
        if [ "$1" = haswell ] && [ -n "${OPENBLAS_L2_SIZE:-}" ]; then BLAS_X+=(-x OPENBLAS_L2_SIZE); fi
    fi
}

# Prefix each line with the time it arrived (bash's EPOCHREALTIME).
stamp() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
}

# run KIND BLAS LAYOUT OUT -- CMD...: in the dry pass print CMD, else run it
# with its stdout timestamped into OUT.log and stderr into OUT.err, and add
# a manifest line. The RSS files are OUT.rss (one process) or OUT.rss.<rank>.
DRY=1
run() {
    local kind=$1 blas=$2 layout=$3 out=$4
    shift 5
    if [ "$DRY" = 1 ]; then
        printf '  %-12s %-10s %-5s ' "$kind" "$blas" "$layout"
        printf '%q ' "$@"
        printf '\n'
        return
    fi
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    printf '%s %-12s %-10s %-5s (load %s) ... ' "$(date +%T)" "$kind" "$blas" "$layout" "$load" >&2
    local t0=$SECONDS
    if ! "$@" 2>"$out.err" | stamp >"$out.log"; then
        echo "FAILED" >&2
        echo "compare.sh: $kind $blas $layout failed; the end of its output:" >&2
        tail -n 20 "$out.log" "$out.err" >&2
        exit 1
    fi
    echo "$((SECONDS - t0)) s" >&2
    printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$blas" "$layout" "$out" "$load" >>"$MANIFEST"
}

DATA=$WORK/data.h5
MODEL=$WORK/model.h5
TRAIN_COMMON=(--data "$DATA" --nf "$NF" --batch "$TRAIN_BATCH" --sigma-begin 50 --sigma-end 0.01
    --steps $((WARM + REPS)) --ckpt-every 0 --resume none)
# ncsn sample with its default micro-batch, as a user runs it: the 16
# samples go through the network 4 at a time (more with more threads),
# with bitwise the samples of one pass of 16.
SAMPLE_COMMON=(--model "$MODEL" --n "$SAMPLE_N" --image-size 32 --steps-each "$STEPS_EACH")

plan() {
    local t
    for t in 1 2; do
        local w
        for w in train sample; do
            local o=$WORK/out/torch_${w}_$t
            run "torch_$w" - "${t}t" "$o" -- env "${MALLOC[@]}" /usr/bin/time -f "$TIMEFMT" -o "$o.rss" \
                "$PY" "$ROOT/bench/bench_torch.py" --threads "$t" --reps "$REPS" --warmup "$WARM" --what "$w" --nf "$NF"
        done
    done
    local b
    for b in $BLAS_SETTINGS; do
        blas_env "$b"
        local o=$WORK/out/net_$b
        run net "$b" 1x1 "$o" -- "${BLAS_ENV[@]}" OPENBLAS_VERBOSE=2 OMP_NUM_THREADS=1 \
            /usr/bin/time -f "$TIMEFMT" -o "$o.rss" "$NET_BIN" "$NF" 3 32 "$TRAIN_BATCH" "$NET_REPS"
        local layout
        for layout in 1x1 1x2 2x1; do
            o=$WORK/out/train_${b}_$layout
            if [ "$layout" = 2x1 ]; then
                run train "$b" "$layout" "$o" -- "${BLAS_ENV[@]}" OMP_NUM_THREADS=1 "${MPIRUN[@]}" \
                    -x OMP_NUM_THREADS "${BLAS_X[@]}" -x HDF5_USE_FILE_LOCKING "${RANKRSS[@]}" "$o.rss" \
                    "$NCSN_BIN" train "${TRAIN_COMMON[@]}" --run-dir "$o.run"
            else
                run train "$b" "$layout" "$o" -- "${BLAS_ENV[@]}" OMP_NUM_THREADS="${layout#1x}" \
                    /usr/bin/time -f "$TIMEFMT" -o "$o.rss" "$NCSN_BIN" train "${TRAIN_COMMON[@]}" --run-dir "$o.run"
            fi
        done
        for layout in 1x1 1x2 2x1; do
            o=$WORK/out/sample_${b}_$layout
            if [ "$layout" = 2x1 ]; then
                run sample "$b" "$layout" "$o" -- "${BLAS_ENV[@]}" OMP_NUM_THREADS=1 "${MPIRUN[@]}" \
                    -x OMP_NUM_THREADS "${BLAS_X[@]}" -x HDF5_USE_FILE_LOCKING "${RANKRSS[@]}" "$o.rss" \
                    "$NCSN_BIN" sample "${SAMPLE_COMMON[@]}" --out "$o.h5"
            else
                run sample "$b" "$layout" "$o" -- "${BLAS_ENV[@]}" OMP_NUM_THREADS="${layout#1x}" \
                    /usr/bin/time -f "$TIMEFMT" -o "$o.rss" "$NCSN_BIN" sample "${SAMPLE_COMMON[@]}" --out "$o.h5"
            fi
        done
    done
}

T_START=$SECONDS
echo "== compare.sh$([ "$QUICK" = 1 ] && echo ' --quick'): ncsn-mpi vs PyTorch, nf $NF, 3x32x32, float32; $(date -Is)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); uptime:$(uptime | sed 's/.*up/ up/')"
echo "ncsn: $NCSN_SRC (sha256 $(sha256sum "$NCSN_BIN" | cut -c1-12), built $(date -r "$NCSN_SRC" +%T)); bench_net: $NET_SRC (sha256 $(sha256sum "$NET_BIN" | cut -c1-12))"
echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src include 2>/dev/null || echo ' + uncommitted changes in src/ include/')"
echo "caller's OpenBLAS environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset} (PyTorch runs with it as is)"
echo "steps: warm-up $WARM + timed $REPS (train, PyTorch); ncsn sample --steps-each $STEPS_EACH (10 Langevin steps); bench_net reps $NET_REPS"
echo "work directory: $WORK (binaries copied to $WORK/bin); exported OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HDF5_USE_FILE_LOCKING=FALSE"
echo
echo "commands (kind, OpenBLAS setting, ranks x threads, command; stdout and stderr go to files):"
DATA_CMD=("$PY" -c 'import sys, h5py, numpy as np
x = np.random.default_rng(0).uniform(-1, 1, (64, 3, 32, 32)).astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("images", data=x).attrs["layout"] = "NCHW"' "$DATA")
INIT_CMD=("$NCSN_BIN" init --out "$MODEL" --nf "$NF" --sigma-begin 50 --sigma-end 0.01)
printf '  %-29s ' data; printf '%q ' "${DATA_CMD[@]}"; printf '\n'
printf '  %-29s ' model; printf '%q ' "${INIT_CMD[@]}"; printf '\n'
plan
echo

"${DATA_CMD[@]}"
"${INIT_CMD[@]}" >/dev/null
DRY=0
plan
ELAPSED=$((SECONDS - T_START))

"$PY" - "$MANIFEST" "$NF" "$WARM" "$REPS" "$TRAIN_BATCH" "$SAMPLE_N" <<'EOF'
# Reads the manifest and the files it names; prints the tables.
import json, statistics, sys

manifest, nf, warm, reps, tb, sn = sys.argv[1], *map(int, sys.argv[2:])
FLOP = 2 * 32 * 32 * 9 * (2 * 3 * nf + 82 * nf * nf)  # forward, one image: 82 nf->nf convs run
runs = [line.rstrip("\n").split("\t") for line in open(manifest)]


def log_lines(out):
    for line in open(out + ".log"):
        t, _, text = line.rstrip("\n").partition(" ")
        yield float(t), text


def rss_cpu(out, ranks):
    """(max peak RSS KB over the processes, sum, CPU% = (user+sys)/wall of the busiest)"""
    rss, cpu = [], []
    for f in ([out + ".rss"] if ranks == 1 else [f"{out}.rss.{r}" for r in range(ranks)]):
        kb, wall, user, sys_ = open(f).read().split("\n")[-2].split()
        rss.append(int(kb))
        cpu.append(100 * (float(user) + float(sys_)) / max(float(wall), 1e-9))
    return max(rss), sum(rss), max(cpu)


res = {}
for kind, blas, layout, out, load in runs:
    ranks = 2 if layout == "2x1" else 1
    r = {"load": float(load)}
    if kind.startswith("torch_"):
        j = json.loads("".join(t for _, t in log_lines(out)))
        m = j[kind[6:]]
        r.update(s=m["median_s"], ips=m["images_per_s"], gf=m["gflops_effective"], cpu=100 * m["cpu_over_wall"])
        r["rss"], r["rss_sum"], _ = rss_cpu(out, 1)
    elif kind == "net":
        for _, t in log_lines(out):
            if t.startswith("forward:"):
                r["fwd_gf"] = float(t.split()[5])
            elif t.startswith("forward+backward:"):
                r["s"], r["bwd_gf"] = float(t.split()[1]), float(t.split()[5])
            elif t.startswith("cblas_sgemm"):
                r["sgemm"], r["shape"] = float(t.split()[2]), t.split()[1].rstrip(":")
        r["core"] = None
        for line in open(out + ".err"):  # OPENBLAS_VERBOSE=2 names the kernels it chose
            if line.startswith("Core: "):
                r["core"] = line.split(": ", 1)[1].strip()
        r["rss"], r["rss_sum"], r["cpu"] = rss_cpu(out, 1)
    elif kind == "train":
        rows = [l.strip().split(",") for l in open(out + ".run/metrics.csv")][1:]
        wall = [float(x[5]) for x in rows]
        d = [wall[k] - wall[k - 1] for k in range(warm, warm + reps)]  # steps warm+1 .. warm+reps
        r["s"] = statistics.median(d)
        r["ips"] = tb / r["s"]
        r["gf"] = 3 * FLOP * r["ips"] / 1e9
        r["rss"], r["rss_sum"], r["cpu"] = rss_cpu(out, ranks)
    elif kind == "sample":
        lv, x = [], None
        for t, text in log_lines(out):
            if text.startswith("level ") and " done" in text:
                lv.append(t)
                levels = int(text.split()[1].split("/")[1])
            elif text.startswith("wrote ") and " samples " in text:
                x = float(text.split(" in ")[1].split()[0])
        d = [b - a for a, b in zip(lv, lv[1:])]  # one level of one micro-batch each
        r["s"] = statistics.median(d) * (len(lv) / levels)  # x micro-batches: one step of all samples
        r["ips"] = sn / r["s"]
        r["gf"] = FLOP * r["ips"] / 1e9
        r["x"] = x
        r["ips_x"] = sn * 10 / x if x else float("nan")
        r["rss"], r["rss_sum"], r["cpu"] = rss_cpu(out, ranks)
    res[(kind, blas, layout)] = r

blases = list(dict.fromkeys(b for k, b, _ in res if k == "net"))
tj = next((json.loads("".join(t for _, t in log_lines(out))) for k, _, _, out, _ in runs if k.startswith("torch_")), None)
if tj:
    print(f"PyTorch {tj['torch']} (oneDNN {'on' if tj['mkldnn'] else 'off'}), {tj['params']:,} parameters, "
          f"{tj['gflop_forward_per_image']:.2f} GFLOP forward per image (this script: {FLOP / 1e9:.2f}); "
          f"malloc: {tj['malloc_env']}")
LABEL = {"haswell": "Haswell", "cooperlake": "Cooperlake", "auto": "unpinned"}
mb = lambda kb: f"{kb / 1024:,.0f}"


def table(kind, title, extra):
    tt = {t: res.get((f"torch_{kind}", "-", f"{t}t")) for t in (1, 2)}
    print(f"\n{title}")
    print(f"  {'implementation':<36} {'s/step':>7} {'img/s':>7} {'GFLOP/s':>8} {'vs torch':>8} {'vs 1x1':>7} "
          f"{'RSS MB':>7} {'RSS/torch':>9} {'CPU%':>5} {'load':>5}{extra[0]}")
    for t in (1, 2):
        r = tt[t]
        if r:
            print(f"  {'PyTorch, ' + str(t) + ' thread' + ('s' if t > 1 else ''):<36} {r['s']:7.3f} {r['ips']:7.2f} "
                  f"{r['gf']:8.1f} {'':>8} {'':>7} {mb(r['rss']):>7} {'':>9} {r['cpu']:5.0f} {r['load']:5.2f}")
    for b in blases:
        base = res.get((kind, b, "1x1"))
        for layout, desc, t in (("1x1", "1 rank x 1 thread", 1), ("1x2", "1 rank x 2 threads", 2),
                                ("2x1", "2 ranks x 1 thread", 2)):
            r = res.get((kind, b, layout))
            if not r:
                continue
            tr = tt[t]
            vs = f"{r['ips'] / tr['ips']:8.2f}" if tr else f"{'':>8}"
            v1 = f"{r['ips'] / base['ips']:7.2f}" if layout != "1x1" else f"{'':>7}"
            rss = mb(r["rss"]) + ("*" if layout == "2x1" else "")
            rr = f"{r['rss'] / tr['rss']:9.2f}" if tr else f"{'':>9}"
            print(f"  {('ncsn ' + LABEL[b] + ', ' + desc):<36} {r['s']:7.3f} {r['ips']:7.2f} {r['gf']:8.1f} {vs} {v1} "
                  f"{rss:>7} {rr} {r['cpu']:5.0f} {r['load']:5.2f}{extra[1](r)}")


table("train", f"TRAINING STEP, batch {tb} (median of {reps} steps after {warm} warm-up; img/s = {tb}/s; "
      f"GFLOP/s = 3 x {FLOP / 1e9:.2f} GFLOP per image)", ("", lambda r: ""))
table("sample", f"LANGEVIN STEP, batch {sn} (median per step after a warm-up; img/s = sample-steps/s = {sn} x "
      f"Langevin steps/s; GFLOP/s = {FLOP / 1e9:.2f} GFLOP per image)",
      (f" {'ncsn X s':>9} {'img/s(X)':>8}",
       lambda r: f" {r['x']:9.1f} {r['ips_x']:8.2f}" if "x" in r else ""))

print(f"\nBENCH_NET (1 thread, batch {tb}, one process: sgemm and the network in the same run)")
print(f"  {'OpenBLAS setting':<24} {'core':<11} {'sgemm GFLOP/s':>13} {'fwd GFLOP/s':>11} {'fwd+bwd GFLOP/s':>15} "
      f"{'fwd+bwd/sgemm':>13} {'train 1x1 GFLOP/s':>17} {'RSS MB':>7} {'CPU%':>5}")
for b in blases:
    r = res[("net", b, "1x1")]
    t1 = res.get(("train", b, "1x1"))
    print(f"  {LABEL[b]:<24} {str(r.get('core')):<11} {r['sgemm']:13.1f} {r['fwd_gf']:11.1f} {r['bwd_gf']:15.1f} "
          f"{100 * r['bwd_gf'] / r['sgemm']:12.0f}% {t1['gf'] if t1 else float('nan'):17.1f} {mb(r['rss']):>7} "
          f"{r['cpu']:5.0f}")
if blases:
    print(f"  (sgemm shape {res[('net', blases[0], '1x1')]['shape']} = one {nf}->{nf} 3x3 conv of one image "
          f"as im2col would run it)")

import h5py, numpy as np  # noqa: E401 (the samples of one setting should not depend on the layout)
print(f"\n  samples vs the same setting's 1 rank x 1 thread (16 samples, same seed):")
for b in blases:
    out = {l: o for k, bb, l, o, _ in runs if k == "sample" and bb == b}
    if "1x1" not in out:
        continue
    ref = h5py.File(out["1x1"] + ".h5", "r")["samples"][()]
    for l in ("1x2", "2x1"):
        if l in out:
            d = np.abs(h5py.File(out[l] + ".h5", "r")["samples"][()] - ref).reshape(ref.shape[0], -1).max(1)
            which = np.nonzero(d)[0]
            print(f"    {LABEL[b]:<11} {l}: " + ("identical" if which.size == 0 else
                  f"{which.size} samples differ (#{','.join(map(str, which))}), max |diff| {d.max():.3g}"))
two = [f"{k} {res[(k, b, '2x1')]['rss_sum'] / 1024:,.0f} MB ({LABEL[b]})" for k in ("train", "sample") for b in blases
       if (k, b, "2x1") in res]
if two:
    print("\n  2 ranks x 1 thread, both ranks' peak RSS added: " + ", ".join(two))
print("""
  vs torch: ncsn img/s / PyTorch img/s at the same number of cores (1x1 vs 1 thread; 1x2 and 2x1 vs 2 threads).
  vs 1x1:   the same OpenBLAS setting's 1 rank x 1 thread run as the base (2x1 / 1x1 = scaling over ranks).
  RSS MB:   peak RSS of the process; * = the larger of the two ranks (each rank measured itself).
  RSS/torch: that peak over the PyTorch process's at the same number of cores.
  CPU%:     (user+sys)/wall of the process (busiest rank): 100 per thread when it had its cores.
  load:     1-minute load average just before the run started.""")
EOF
echo
echo "uptime at the end:$(uptime | sed 's/.*up/ up/'); total time of this run: ${ELAPSED} s"
