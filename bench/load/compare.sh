#!/usr/bin/env bash
# Split (1 prompt + 1 token worker) versus mixed (2 mixed workers) behind the router, on
# this machine, under the same open-loop trace slice. Both clusters are judged against one
# SLO reference: the unloaded mixed cluster (the paper's reference is a request alone on
# a machine that runs both phases), so a slower setup cannot earn itself looser SLOs.
#
#   bench/load/compare.sh                          # conversation trace, first 300 requests
#   RATES="5 10" LIMIT=200 bench/load/compare.sh   # knobs below; extra args go to the bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SHARED=${SPLITWISE_SHARED:-$ROOT/../shared}
MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.bin}
TRACE=${TRACE:-$SHARED/data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv}
LIMIT=${LIMIT:-300}
# Offered loads in req/s: the slice's own gaps are kept, compressed to this mean rate.
# stories260K serves a request alone in ~5-15 ms, so loading a 2-core machine takes tens
# of requests a second; the slice's own 3.6 req/s would leave it idle.
RATES=${RATES:-10 20 40 80}
BASELINE_REQUESTS=${BASELINE_REQUESTS:-8}  # prompt lengths measured alone, 5 times each
WARMUP=${WARMUP:-10}  # serial requests ignored before the baseline (connections, caches)
OUT=${OUT:-$(mktemp -d /tmp/splitwise-load.XXXXXX)}
WORKER=${WORKER:-$BUILD/workers/worker/splitwise-worker}
ROUTER=${ROUTER:-$BUILD/workers/router/splitwise-router}
BENCH=${BENCH:-$BUILD/bench/load/splitwise-bench-load}
# One OpenMP thread per worker: each setup runs two engine processes on two cores, and
# more threads than cores would measure OpenMP oversubscription, not the setup.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

for f in "$WORKER" "$ROUTER" "$BENCH" "$MODEL" "$TRACE"; do
  [[ -e $f ]] || { echo "compare.sh: missing $f (build first, or set the variable)" >&2; exit 1; }
done
mkdir -p "$OUT"

PIDS=()  # servers of the running setup
FG=""    # the bench process being waited for
stop_all() {
  # Only the processes this script started, by pid.
  for p in $FG "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in $FG "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  FG=""
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# run CMD...: in the background and waited for, because bash defers a trap until a
# foreground child exits: a TERM would otherwise wait out a 30-second bench run.
run() {
  "$@" &
  FG=$!
  local rc=0
  wait "$FG" || rc=$?
  FG=""
  return "$rc"
}

# start NAME CMD...: runs CMD in the background, waits for its "ready" line, and sets
# READY to that line. A process that exits first ends the script with its log.
start() {
  local name=$1
  shift
  "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    if READY=$(grep -m1 ' ready ' "$OUT/$name.out"); then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "compare.sh: $name exited before it was ready:" >&2
      cat "$OUT/$name.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "compare.sh: $name not ready after 30 s" >&2
  exit 1
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$READY"; }

worker() {  # worker NAME ROLE -> ADDR
  start "$1" "$WORKER" --role "$2" -m "$MODEL" --host 127.0.0.1 --port 0
  ADDR=$(field http)
}

router() {  # router NAME WORKER-ARGS... -> ROUTER_ADDR, once every worker is healthy
  local name=$1
  shift
  start "$name" "$ROUTER" -m "$MODEL" --host 127.0.0.1 --port 0 "$@"
  ROUTER_ADDR=$(field http)
  local want
  want=$(field workers)
  for _ in $(seq 100); do
    local health
    health=$(curl -s "http://$ROUTER_ADDR/health" || true)
    local healthy
    healthy=$(grep -o '"[a-z]*":[0-9]*' <<<"$health" | awk -F: '{s += $2} END {print s + 0}')
    [[ $healthy -ge $want ]] && return 0
    sleep 0.1
  done
  echo "compare.sh: router $ROUTER_ADDR: workers not healthy: $health" >&2
  exit 1
}

baseline() {  # baseline FILE: the unloaded latencies of the cluster now running
  run "$BENCH" --router "$ROUTER_ADDR" -m "$MODEL" --trace "$TRACE" --limit "$LIMIT" \
    --baseline-requests "$BASELINE_REQUESTS" --warmup "$WARMUP" --baseline-only --save-baseline "$1"
}

bench() {  # bench NAME LABEL: every rate against the running cluster, mixed reference
  local name=$1 label=$2 rate
  for rate in $RATES; do
    echo "compare.sh: $label at $rate req/s"
    run "$BENCH" load --router "$ROUTER_ADDR" -m "$MODEL" --trace "$TRACE" --limit "$LIMIT" \
      --rate "$rate" --label "$label, $rate req/s" --baseline "$OUT/baseline.json" \
      --json "$OUT/$name-$rate.json" "${EXTRA[@]}" >"$OUT/$name-$rate.txt"
    # A moment of quiet so one run's stragglers do not land in the next run's first second.
    sleep 2
  done
}
EXTRA=("$@")

echo "compare.sh: logs and JSON in $OUT; OMP_NUM_THREADS=$OMP_NUM_THREADS, $(nproc --all) cores"

# (b) mixed first: its unloaded latencies are the SLO reference for both.
worker mixed-a mixed
MA=$ADDR
worker mixed-b mixed
MB=$ADDR
router router-mixed --mixed-worker "$MA" --mixed-worker "$MB"
baseline "$OUT/baseline.json"
bench mixed "mixed: router + 2 mixed workers"
stop_all

# (a) split: its own unloaded figures are saved for the record, not used for SLOs.
worker prompt prompt
P=$ADDR
worker token token
T=$ADDR
router router-split --prompt-worker "$P" --token-worker "$T"
baseline "$OUT/baseline-split.json"
bench split "split: router + 1 prompt + 1 token worker"
stop_all

echo
for rate in $RATES; do cat "$OUT/split-$rate.txt" "$OUT/mixed-$rate.txt"; done
command -v jq >/dev/null || exit 0
# One line per run; TBT here is the per-request mean gap's p50/p99 slowdown, as judged.
echo "setup  req/s  done fail  TTFT p50/p99 ms  E2E p50/p99 ms  tok/s  SLOs held"
for rate in $RATES; do
  for name in split mixed; do
    jq -r --arg n "$name" --arg r "$rate" '[$n, $r, .completed, (.offered - .completed),
        "\(.ttft_ms.p50 | .*10 | round / 10)/\(.ttft_ms.p99 | .*10 | round / 10)",
        "\(.e2e_ms.p50 | .*10 | round / 10)/\(.e2e_ms.p99 | .*10 | round / 10)",
        (.output_tokens_per_s | round),
        "\([.slo[][] | select(.ok)] | length)/9"] | @tsv' "$OUT/$name-$rate.json"
  done
done | column -t
