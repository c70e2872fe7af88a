#!/usr/bin/env bash
# test.sh: set-up (packages and build) and the whole test suite through ctest.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$SRC/build}
bash "$SRC/scripts/setup.sh" "$BUILD"
cd "$BUILD"
ctest --output-on-failure "$@"
