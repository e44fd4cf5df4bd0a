#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs every test.
# GPU tests (ctest label `gpu`) skip with a message when no GPU is present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/build.sh" >"$build.log" 2>&1 || { cat "$build.log" >&2; exit 1; }
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
