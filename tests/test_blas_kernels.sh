#!/usr/bin/env bash
# test_blas_kernels.sh NCSN_BIN: ncsn runs OpenBLAS with kernels that fit
# the CPU. OPENBLAS_VERBOSE=2 makes OpenBLAS print the kernels it loaded
# ("Core: NAME") each time the library starts. The OpenBLAS variables the
# environment sets are left as they are:
#   - if OpenBLAS's own choice is an old fallback (Prescott, Core2, ...) on a
#     CPU with AVX2, OPENBLAS_CORETYPE is unset, then ncsn must start once
#     more with modern kernels and say so;
#   - otherwise OpenBLAS must start once and ncsn must say nothing about it.
# Either way the command must work. When ncsn starts again, it must do so
# on the CPUs it was given: with OMP_PROC_BIND set, OpenMP (which prints
# its places at each start with OMP_DISPLAY_ENV) must find the same places
# the second time (it used to find only the core the first start had bound
# its first thread to, and run every thread there).
set -uo pipefail
NCSN=$1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export HDF5_USE_FILE_LOCKING=FALSE
OPENBLAS_VERBOSE=2 "$NCSN" init --out "$W/m.h5" --nf 8 --sigma-begin 1 --sigma-end 0.1 --num-classes 2 \
    >"$W/init.log" 2>&1 || { echo "FAIL: ncsn init failed"; cat "$W/init.log"; exit 1; }
cores=$(grep -o "Core: [A-Za-z0-9]*" "$W/init.log" | cut -d' ' -f2)
first=$(echo "$cores" | head -1) n=$(echo "$cores" | grep -c .)
echo "OpenBLAS started $n time(s): $(echo $cores) (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset})"
[ -n "$first" ] || { echo "SKIP: OpenBLAS did not report its kernels"; exit 77; }
fallback=0
case $first in Prescott | Core2 | Penryn | Dunnington | Nehalem | Atom | Katmai | Coppermine) fallback=1 ;; esac
avx2=0
grep -qw avx2 /proc/cpuinfo && avx2=1
"${PYTHON:-/usr/bin/python3}" - "$W/d.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("images", data=np.zeros((4, 1, 8, 8), np.float32)).attrs["layout"] = "NCHW"
PY
"$NCSN" train --data "$W/d.h5" --run-dir "$W/run" --in-channels 1 --nf 8 --batch 2 --steps 1 --sigma-begin 1 \
    --sigma-end 0.1 --num-classes 2 --ckpt-every 0 --resume none >"$W/train.log" 2>&1 ||
    { echo "FAIL: ncsn train failed"; cat "$W/train.log"; exit 1; }
note=$(grep -c "^OpenBLAS kernels:" "$W/train.log")
if [ $fallback = 1 ] && [ $avx2 = 1 ] && [ -z "${OPENBLAS_CORETYPE-}" ]; then
    second=$(echo "$cores" | sed -n 2p)
    case $second in Haswell | SkylakeX | Cooperlake) ;; *) echo "FAIL: after $first, expected a second start with modern kernels, got '$second'"; exit 1 ;; esac
    [ "$n" -eq 2 ] || { echo "FAIL: OpenBLAS started $n times, expected 2"; exit 1; }
    [ "$note" -eq 1 ] || { echo "FAIL: ncsn train did not say which kernels it chose"; cat "$W/train.log"; exit 1; }
    echo "ok: fallback $first replaced by $second, and said so"
    OMP_DISPLAY_ENV=true OMP_PROC_BIND=spread OMP_PLACES=cores "$NCSN" init --out "$W/m2.h5" --nf 8 \
        --sigma-begin 1 --sigma-end 0.1 --num-classes 2 >"$W/bind.log" 2>&1 ||
        { echo "FAIL: ncsn init with OMP_PROC_BIND=spread failed"; cat "$W/bind.log"; exit 1; }
    places=$(grep "OMP_PLACES = " "$W/bind.log" | sed "s/.*= //")
    [ "$(echo "$places" | grep -c .)" -eq 2 ] ||
        { echo "FAIL: expected OpenMP to start twice under OMP_DISPLAY_ENV"; cat "$W/bind.log"; exit 1; }
    [ "$(echo "$places" | sed -n 1p)" = "$(echo "$places" | sed -n 2p)" ] ||
        { echo "FAIL: with OMP_PROC_BIND=spread the second start saw places $(echo $places | cut -d' ' -f2), the first $(echo $places | cut -d' ' -f1)"; exit 1; }
    echo "ok: with OMP_PROC_BIND=spread both starts saw the places $(echo "$places" | sed -n 1p)"
else
    [ "$n" -eq 1 ] || { echo "FAIL: OpenBLAS started $n times though its choice $first stands"; exit 1; }
    [ "$note" -eq 0 ] || { echo "FAIL: a kernel note without a change"; exit 1; }
    echo "ok: OpenBLAS's choice $first kept"
fi
