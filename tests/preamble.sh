# preamble.sh: sourced by the shell tests that take NCSN_BIN as $1. Sets
# bin (the binary, absolute), py (PYTHON or /usr/bin/python3) and launch
# (MPI_LAUNCH as an array; the rank count is appended), skips (77) without
# h5py/numpy, and runs MPI as root with one thread per rank and no HDF5
# file locking.
bin=$(readlink -f "$1")
py=${PYTHON:-/usr/bin/python3}
read -r -a launch <<<"${MPI_LAUNCH:-mpiexec --oversubscribe -n}"
"$py" -c 'import h5py, numpy' 2>/dev/null || { echo "SKIP: python3-h5py / python3-numpy not installed"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HDF5_USE_FILE_LOCKING=FALSE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
