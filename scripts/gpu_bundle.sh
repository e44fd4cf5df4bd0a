#!/usr/bin/env bash
# Builds the GPU tests here (nvcc needs no GPU) and gathers them, with the shared
# libraries they need beyond glibc and the driver, into .gpu/ (git-ignored), ready to be
# carried to a lent GPU machine, which has no Debian packages:
#   device run --carry .gpu: cd .gpu && LD_LIBRARY_PATH=$PWD ./run_all.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="$root/build-cuda" CMAKE_ARGS="-DSPLITWISE_CUDA=ON" "$root/scripts/build.sh" >/dev/null
rm -rf "$root/.gpu" && mkdir -p "$root/.gpu"
for t in "$root"/build-cuda/tests/*_gpu_test; do
  cp "$t" "$root/.gpu/"
  ldd "$t" | awk '/=>/ {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda)\.so' |
    xargs -r -I{} cp -L {} "$root/.gpu/"
done
cat >"$root/.gpu/run_all.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every bundled GPU test; exits non-zero if any fails.
cd "$(dirname "$0")" && export LD_LIBRARY_PATH="$PWD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
rc=0
for t in ./*_gpu_test; do "$t" || rc=1; done
exit $rc
RUN
chmod +x "$root/.gpu/run_all.sh"
du -sh "$root/.gpu"
