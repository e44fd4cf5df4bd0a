#!/usr/bin/env bash
# bundle_libs.sh OUTDIR BINARY...
# Copies the shared libraries the binaries load (as ldd resolves them in the build stage)
# into OUTDIR, so a runtime stage gets exactly the build's versions without a package
# manager. Left out, because the runtime base image provides them and must own them:
#   - glibc (libc, libm, ld-linux, libpthread, libdl, librt, ...): same distro release as
#     the build stage, and a second copy would fight the loader;
#   - CUDA's libraries (cuBLAS, cuBLASLt, NCCL, cudart): the nvidia/cuda runtime base
#     carries the versions matching the toolkit it was built with;
#   - the driver (libcuda, libnvidia-*): mounted into GPU pods by the NVIDIA container
#     toolkit, matching the node's kernel module; never baked into an image.
# Libraries opened with dlopen() at run time are not seen by ldd and are not copied.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUTDIR BINARY..." >&2
  exit 2
fi
out="$1"
shift
mkdir -p "$out"

skip() {
  case "$1" in
    linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libmvec.so.* | libpthread.so.* | \
      libdl.so.* | librt.so.* | libresolv.so.* | libutil.so.* | libanl.so.* | libnsl.so.* | \
      libBrokenLocale.so.* | libthread_db.so.*) return 0 ;;
    libcuda.so.* | libnvidia-*.so.* | libcudart.so.* | libcublas.so.* | libcublasLt.so.* | \
      libnccl.so.* | libnvrtc*.so.* | libnvJitLink.so.* | libcufft*.so.* | libcurand.so.* | \
      libcusparse*.so.* | libcusolver*.so.* | libnvToolsExt.so.*) return 0 ;;
  esac
  return 1
}

for bin in "$@"; do
  [ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 1; }
  # "libfoo.so.1 => /usr/lib/x86_64-linux-gnu/libfoo.so.1 (0x...)"; a "not found" fails.
  if ldd "$bin" | grep -q "not found"; then
    echo "$0: $bin has unresolved libraries:" >&2
    ldd "$bin" | grep "not found" >&2
    exit 1
  fi
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    skip "$name" && continue
    # -L: the file behind the soname link, stored under the soname the loader asks for.
    cp -L "$path" "$out/$name"
  done
done
ls "$out"
