#!/usr/bin/env bash
# ctest fixture of the observability tests: installs Debian's `prometheus` package
# (promtool and the server) the way scripts/setup.sh installs packages. Never fails: where
# it cannot install (no apt, no network, no sudo), the tests that need promtool skip.
set -uo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_prometheus: no apt-get here; install Prometheus' promtool and server by hand"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! sudo -n true 2>/dev/null; then
    echo "install_prometheus: not root and no password-less sudo; run: sudo apt-get install prometheus"
    exit 0
  fi
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
echo "install_prometheus: installing prometheus" >&2
# The package's service is not started: policy-rc.d or no init system in containers, and
# the tests start their own server on a free loopback port anyway.
if ! $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
    echo "install_prometheus: apt-get install prometheus failed; the tests that need it skip"
fi
exit 0
