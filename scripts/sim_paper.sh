#!/usr/bin/env bash
# Reproduces the Splitwise paper's iso-power comparison with splitwise-sim: for each
# design at the paper's pool sizes, the highest Poisson arrival rate (token lengths from
# the trace) at which all nine slowdown SLOs hold. Usage: scripts/sim_paper.sh [model];
# SIM_ARGS=--tbt-per-token judges TBT on every token's gap instead of each request's mean.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sim="${SIM:-$root/build/sim/splitwise-sim}"
model="${1:-llama2-70b}"
export SPLITWISE_SHARED="${SPLITWISE_SHARED:-$root/../shared}"
run() {  # trace design prompt token
  local out
  out=$("$sim" --model "$model" --trace "$1" --design "$2" --prompt "$3" --token "$4" \
          --duration "${DURATION:-600}" --find-max-rate ${SIM_ARGS:-})
  local rate cost power
  rate=$(sed -n 's/.*SLO met: \([0-9.]*\) req.*/\1/p' <<<"$out")
  cost=$(sed -n 's/^cost \([0-9.]*\) .*power \([0-9.]*\) units.*/\1/p' <<<"$out")
  power=$(sed -n 's/^cost [0-9.]* .*power \([0-9.]*\) units.*/\1/p' <<<"$out")
  echo "| $1 | $2 | $3/$4 | $rate | $cost | $power |"
}
echo "| trace | design | prompt/token machines | max req/s, all SLOs met | \$/h | power |"
echo "|---|---|---|---:|---:|---:|"
for trace in conv code; do
  run "$trace" baseline-a100 70 0
  run "$trace" baseline-h100 40 0
done
run conv splitwise-aa 45 25
run conv splitwise-hh 25 15
run conv splitwise-ha 25 26
run conv splitwise-hhcap 25 21
run code splitwise-aa 55 15
run code splitwise-hh 35 5
run code splitwise-ha 35 8
run code splitwise-hhcap 35 7
