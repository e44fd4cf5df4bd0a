#!/usr/bin/env bash
# Runs on the lent GPU machine from the bundle made by scripts/gpu_bundle.sh:
#   [ONLY_TESTS=<glob>] /tmp/g/device_run.sh [tests] [sanitize] [bench] [nccl]
# Every log goes into $OUT/logs.tgz (the device tool brings back few files); benchmark
# tables into $OUT/*.md; a summary is printed last.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-/tmp/out}"
logs="$(mktemp -d)"
mkdir -p "$out"
run="$here/run.sh"
summary=()
nvidia-smi --query-gpu=name,memory.total,power.limit,clocks.max.sm --format=csv | tee "$logs/gpu.txt"
for step in "$@"; do
  case "$step" in
  tests)
    for t in "$here"/bin/${ONLY_TESTS:-*_gpu_test}; do
      name="$(basename "$t")"
      timeout 150 "$run" "$name" >"$logs/$name.log" 2>&1
      rc=$?
      summary+=("$name rc=$rc $(grep -cE '^\[       OK \]' "$logs/$name.log") ok, $(grep -E '^\[  (FAILED|SKIPPED)  *\] [A-Za-z]' "$logs/$name.log" | sort -u | tr '\n' ' ')")
    done
    ;;
  sanitize)
    cs="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
    # memcheck over every case; racecheck (much slower) over the kernels with shared memory.
    for spec in "memcheck cuda_ops_gpu_test *" "racecheck cuda_ops_gpu_test *AddRmsnorm*:*Gemv*" \
      "memcheck kv_pack_gpu_test *" "racecheck kv_pack_gpu_test *"; do
      read -r tool t filter <<<"$spec"
      timeout 150 "$run" sanitize "$cs" --tool "$tool" --error-exitcode 9 "$here/bin/$t" \
        --gtest_filter="$filter" >"$logs/san_${t}_$tool.log" 2>&1
      summary+=("sanitizer $tool $t ($filter) rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/san_${t}_$tool.log" | tail -1)")
    done
    ;;
  bench)
    timeout 60 "$run" splitwise-bench-attention >"$logs/bench_attention.log" 2>&1
    summary+=("bench-attention rc=$?")
    timeout 200 "$run" splitwise-bench-model --out "$out/model_bench.md" >"$logs/bench_model.log" 2>&1
    summary+=("bench-model rc=$?")
    ;;
  nccl)
    timeout 120 "$run" splitwise-bench-nccl-handoff >"$logs/bench_nccl.log" 2>&1
    summary+=("bench-nccl rc=$?")
    cp "$logs/bench_nccl.log" "$out/nccl_bench.txt"
    ;;
  esac
done
tar -C "$logs" -czf "$out/logs.tgz" .
echo "==== summary"
printf '%s\n' "${summary[@]}"
for f in "$logs"/bench_*.log; do [[ -f "$f" ]] && { echo "== $(basename "$f")"; tail -12 "$f"; }; done
for f in "$logs"/*_gpu_test.log; do
  grep -q FAILED "$f" && { echo "== $(basename "$f")"; grep -E 'Failure|FAILED|rror' "$f" | head -20; }
done
exit 0
