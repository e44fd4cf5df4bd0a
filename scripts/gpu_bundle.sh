#!/usr/bin/env bash
# Builds the GPU tests, GPU benchmarks and the daemons here (nvcc needs no GPU) and gathers
# them into .gpu/ (git-ignored) for a lent GPU machine, which has the driver, cuBLAS and
# NCCL but no Debian packages: stripped binaries, the shared libraries they need beyond
# glibc/CUDA, and the small test models of ../shared. On the GPU machine:
#   python3 -c "import tarfile; tarfile.open('.gpu_pack/gpu.tar.xz').extractall('/tmp/g')"
#   /tmp/g/device_run.sh tests sanitize bench nccl   (logs and results under $OUT)
#   /tmp/g/run.sh tests        every *_gpu_test (exit 1 if any fails)
#   .gpu/run.sh <program> ...  one program with the environment set up
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build-cuda}"
BUILD_DIR="$build" CMAKE_ARGS="-DSPLITWISE_CUDA=ON" "$root/scripts/build.sh" >/dev/null
out="$root/.gpu"
rm -rf "$out" && mkdir -p "$out/bin" "$out/lib" "$out/shared"
progs=("$build"/tests/*_gpu_test "$build"/bench/cuda/splitwise-bench-* \
  "$build"/workers/worker/splitwise-worker "$build"/workers/router/splitwise-router \
  "$build"/workers/router/splitwise-client)
for p in "${progs[@]}"; do
  [[ -x "$p" ]] || continue
  strip -o "$out/bin/$(basename "$p")" "$p"
  ldd "$p" | awk '/=>/ {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcublas|libcublasLt|libnccl)\.so' |
    xargs -r -I{} cp -Lu {} "$out/lib/"
done
shared="${SPLITWISE_SHARED:-$root/../shared}"
[[ -d "$shared/models" ]] && cp -r "$shared/models" "$out/shared/"
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs bundled GPU programs with their libraries and the test models found.
here="$(cd "$(dirname "$0")" && pwd)"
cuda_libs="$(dirname "$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libcublasLt.so.13' -print 2>/dev/null | head -1)")"
nccl_libs="$(dirname "$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libnccl.so.2' -print 2>/dev/null | head -1)")"
export LD_LIBRARY_PATH="$here/lib:$cuda_libs:$nccl_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SPLITWISE_SHARED="$here/shared" NCCL_NVLS_ENABLE=0
export SPLITWISE_WORKER_BIN="$here/bin/splitwise-worker" SPLITWISE_ROUTER_BIN="$here/bin/splitwise-router"
if [[ "$1" == sanitize ]]; then  # sanitize <compute-sanitizer> <args...> <program>
  shift
  exec "$@"
fi
if [[ "$1" == tests ]]; then
  rc=0
  for t in "$here"/bin/*_gpu_test; do echo "== $(basename "$t")"; "$t" || rc=1; done
  exit $rc
fi
prog="$1"; shift
exec "$here/bin/$prog" "$@"
RUN
chmod +x "$out/run.sh"
cp "$root/scripts/gpu_device_run.sh" "$out/device_run.sh"
# The device tool carries at most 64 MiB: ship the bundle xz-compressed (fatbins shrink
# about 7x); unpack there with python3's tarfile, which every image has.
mkdir -p "$root/.gpu_pack"
tar -C "$out" -cf - . | xz -T2 -6 >"$root/.gpu_pack/gpu.tar.xz"
du -sh "$out" "$root/.gpu_pack/gpu.tar.xz"
