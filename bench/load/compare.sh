#!/usr/bin/env bash
# Split (1 prompt + 1 token worker) versus mixed (2 mixed workers) behind the router, on
# this machine, under the same open-loop trace slice. Both clusters are judged against one
# SLO reference: the unloaded mixed cluster (the paper's reference is a request alone on
# a machine that runs both phases), so a slower setup cannot earn itself looser SLOs.
#
#   bench/load/compare.sh                   # conversation trace, first 300 requests
#   RATE=4 LIMIT=200 bench/load/compare.sh  # knobs below; extra args go to the bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SHARED=${SPLITWISE_SHARED:-$ROOT/../shared}
MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.bin}
TRACE=${TRACE:-$SHARED/data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv}
LIMIT=${LIMIT:-300}
RATE=${RATE:-8}  # offered req/s; the slice's own gaps are kept, only compressed
BASELINE_REQUESTS=${BASELINE_REQUESTS:-16}
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

PIDS=()
stop_all() {
  # Only the processes this script started, by pid.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

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

bench() {  # bench NAME LABEL BASELINE-ARGS...
  local name=$1 label=$2
  shift 2
  "$BENCH" load --router "$ROUTER_ADDR" -m "$MODEL" --trace "$TRACE" --limit "$LIMIT" \
    --rate "$RATE" --label "$label" --json "$OUT/$name.json" "$@" "${EXTRA[@]}" \
    | tee "$OUT/$name.txt"
}
EXTRA=("$@")

echo "compare.sh: logs and JSON in $OUT; OMP_NUM_THREADS=$OMP_NUM_THREADS, $(nproc) cores"

# (b) mixed first: its unloaded latencies are the SLO reference for both.
worker mixed-a mixed
MA=$ADDR
worker mixed-b mixed
MB=$ADDR
router router-mixed --mixed-worker "$MA" --mixed-worker "$MB"
"$BENCH" --router "$ROUTER_ADDR" -m "$MODEL" --trace "$TRACE" --limit "$LIMIT" --rate "$RATE" \
  --baseline-requests "$BASELINE_REQUESTS" --baseline-only --save-baseline "$OUT/baseline.json"
bench mixed "mixed: router + 2 mixed workers" --baseline "$OUT/baseline.json" >/dev/null
stop_all

# (a) split: its own unloaded figures are printed for the record, not used for SLOs.
worker prompt prompt
P=$ADDR
worker token token
T=$ADDR
router router-split --prompt-worker "$P" --token-worker "$T"
"$BENCH" --router "$ROUTER_ADDR" -m "$MODEL" --trace "$TRACE" --limit "$LIMIT" --rate "$RATE" \
  --baseline-requests "$BASELINE_REQUESTS" --baseline-only --save-baseline "$OUT/baseline-split.json"
bench split "split: router + 1 prompt + 1 token worker" --baseline "$OUT/baseline.json" >/dev/null
stop_all

echo
cat "$OUT/split.txt" "$OUT/mixed.txt"
