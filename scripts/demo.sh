#!/usr/bin/env bash
# The README's main job: a local phase-split cluster (router, prompt worker, token
# worker) serving a real model, and one streamed completion through it, with its time to
# first token and tokens/s.
#   scripts/demo.sh [--model PATH] [--prompt TEXT] [--max-tokens N] [--serve]
# --serve keeps the cluster up after the completion until Ctrl-C. Ctrl-C at any point
# stops every process it started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
shared="${SPLITWISE_SHARED:-$root/../shared}"
model="$shared/models/stories260K/stories260K.bin"
prompt="Once upon a time"
max_tokens=120
serve=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --prompt) prompt="$2"; shift 2 ;;
    --max-tokens) max_tokens="$2"; shift 2 ;;
    --serve) serve=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ ! -e "$model" ]; then
  cat >&2 <<MSG
demo: no model at $model.
The default is stories260K, a 260K-parameter Llama trained on TinyStories, from
Hugging Face karpathy/tinyllamas (stories260K/stories260K.bin with its tokenizer
tok512.bin beside it). Put it under ../shared/models/stories260K/, set
SPLITWISE_SHARED, or pass --model PATH (a Hugging Face directory with tokenizer.json,
or a llama2.c .bin with tokenizer.bin beside it).
MSG
  exit 1
fi

"$root/scripts/build.sh" --target splitwise-worker splitwise-router splitwise-client \
  >"$build.log" 2>&1 || { cat "$build.log" >&2; exit 1; }

logs="$(mktemp -d)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 130' INT TERM

# Starts a daemon on a free port; sets $ready to its "ready" line. (Not called in $(...):
# a subshell would keep the pid from the cleanup list.)
start() {
  local name="$1"; shift
  "$@" >"$logs/$name.out" 2>"$logs/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q ready "$logs/$name.out" 2>/dev/null; then ready=$(grep ready "$logs/$name.out"); return; fi
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$logs/$name.err" >&2; exit 1; }
    sleep 0.1
  done
  echo "demo: $name did not start; its log: $logs/$name.err" >&2
  exit 1
}
port_of() { sed -n 's/.*http=[^:]*:\([0-9]*\).*/\1/p' <<<"$1"; }

bin="$build/workers"
start token "$bin/worker/splitwise-worker" --role token -m "$model" --port 0 --kv-port 0
token=$ready
start prompt "$bin/worker/splitwise-worker" --role prompt -m "$model" --port 0
prompt_w=$ready
start router "$bin/router/splitwise-router" -m "$model" --port 0 \
  --prompt-worker "127.0.0.1:$(port_of "$prompt_w")" --token-worker "127.0.0.1:$(port_of "$token")"
router=$ready
rport=$(port_of "$router")
echo "cluster: router http://127.0.0.1:$rport, prompt worker :$(port_of "$prompt_w"), token worker :$(port_of "$token") (logs in $logs)"
echo
"$bin/router/splitwise-client" --port "$rport" --wait 10 -p "$prompt" -n "$max_tokens"

if [ "$serve" = 1 ]; then
  echo
  echo "serving on http://127.0.0.1:$rport/v1 (OpenAI API) until Ctrl-C"
  wait
fi
