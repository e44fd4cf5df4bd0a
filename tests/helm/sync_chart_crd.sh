#!/usr/bin/env bash
# Copies the InferenceCluster CRD into the chart: crds/inferenceclusters.splitwise.io.yaml
# is the source of truth, helm/splitwise/crds/ holds a byte-identical copy (Helm installs
# only what lies inside the chart). `--check` changes nothing and exits 1 when they differ;
# tests/helm (chart.test.mjs) fails the same way.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/crds/inferenceclusters.splitwise.io.yaml"
dst="$root/helm/splitwise/crds/inferenceclusters.splitwise.io.yaml"
if [ "${1:-}" = "--check" ]; then
  if cmp -s "$src" "$dst"; then exit 0; fi
  echo "helm/splitwise/crds/ is out of date with crds/: run tests/helm/sync_chart_crd.sh" >&2
  exit 1
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
echo "copied ${src#"$root"/} -> ${dst#"$root"/}"
