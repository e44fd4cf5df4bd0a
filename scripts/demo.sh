#!/usr/bin/env bash
# The README's main job: generates text with a real pretrained Llama (stories260K) on the
# CPU. Extra arguments go to splitwise-generate (e.g. -p "prompt" -n 100 -t 0.8).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
shared="${SPLITWISE_SHARED:-$root/../shared}"
model="$shared/models/stories260K/stories260K.bin"
[ -f "$model" ] || { echo "demo: model not found at $model (set SPLITWISE_SHARED)" >&2; exit 1; }
"$root/scripts/build.sh" --target splitwise-generate >"$build.log" 2>&1 || { cat "$build.log" >&2; exit 1; }
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-p "Once upon a time" -n 120)
exec "$build/workers/engine/splitwise-generate" -m "$model" \
  -z "$shared/models/stories260K/tok512.bin" "${args[@]}"
