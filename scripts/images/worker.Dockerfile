# syntax=docker/dockerfile:1
# The worker image: splitwise-worker (CUDA and CPU backends) and splitwise-router. The
# operator runs both from one image (InferenceCluster spec.image, else its --image), so
# this is the image a cluster's pods use. Build from the repository root:
#   docker build -f scripts/images/worker.Dockerfile -t ghcr.io/splitwise/splitwise:0.1.0 .
# GPU pods get the driver from the NVIDIA container toolkit; CPU pools (gpuType: CPU) run
# the same image without one.
ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
# 80: A100, 90: H100/H200; add 89 for L4/L40S, 86 for A10G.
ARG CUDA_ARCHITECTURES="80;90"
WORKDIR /src
# The same scripts as CI and developers: setup.sh installs the packages (first and alone,
# so its layer outlives source changes), build.sh configures and builds. Portable code (no
# -march=native: the image runs on whatever CPU the node has), CUDA required, no tests.
COPY scripts/setup.sh scripts/
RUN ./scripts/setup.sh
COPY . .
RUN BUILD_DIR=/build \
    CMAKE_ARGS="-DSPLITWISE_CUDA=ON -DSPLITWISE_NATIVE=OFF -DBUILD_TESTING=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    ./scripts/build.sh --target splitwise-worker splitwise-router
RUN strip /build/workers/worker/splitwise-worker /build/workers/router/splitwise-router && \
    ./scripts/images/bundle_libs.sh /opt/splitwise/lib \
      /build/workers/worker/splitwise-worker /build/workers/router/splitwise-router

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
LABEL org.opencontainers.image.title="splitwise" \
      org.opencontainers.image.description="Splitwise prompt/token worker and router (CUDA runtime)"
COPY --from=build /opt/splitwise/lib/ /opt/splitwise/lib/
COPY --from=build /build/workers/worker/splitwise-worker /usr/local/bin/splitwise-worker
COPY --from=build /build/workers/router/splitwise-router /usr/local/bin/splitwise-router
# The base image's LD_LIBRARY_PATH (the driver's mount points) stays after ours.
ENV LD_LIBRARY_PATH=/opt/splitwise/lib:${LD_LIBRARY_PATH}
# 65532: the uid the operator's pods run as (runAsNonRoot needs a numeric USER).
USER 65532:65532
EXPOSE 8000 9000
ENTRYPOINT ["splitwise-worker"]
