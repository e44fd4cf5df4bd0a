#!/usr/bin/env bash
# Installs the Debian packages the build and tests need. Idempotent and quiet when
# everything is already there; safe to run on every invocation of demo/test.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libopenblas-openmp-dev libcli11-dev libspdlog-dev nlohmann-json3-dev libicu-dev
  libboost-dev libssl-dev prometheus-cpp-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
