#!/usr/bin/env bash
# setup.sh [BUILD_DIR]: installs the Debian packages ncsn-mpi needs (when
# missing and we are root) and builds it with CMake. Used by the README's
# two commands and by CI.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
# build and run; the PyTorch reference, data, plots and evaluation; Slurm
# (without recommends, as DESIGN.md 7 measured).
PACKAGES=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
          libopenblas-dev libpng-dev python3-numpy python3-h5py python3-matplotlib python3-torch
          dataset-fashion-mnist)
SLURM_PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge)
missing() {
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}
need=($(missing "${PACKAGES[@]}")) need_slurm=($(missing "${SLURM_PACKAGES[@]}"))
if [ $((${#need[@]} + ${#need_slurm[@]})) -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: missing Debian packages (run as root to install): ${need[*]} ${need_slurm[*]}" >&2
        exit 1
    fi
    echo "setup.sh: installing ${need[*]} ${need_slurm[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    [ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
    [ ${#need_slurm[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${need_slurm[@]}" >/dev/null
fi
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${NCSN_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
