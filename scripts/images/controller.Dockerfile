# syntax=docker/dockerfile:1
# The operator: splitwise-controller (helm/splitwise installs it).
#   docker build -f scripts/images/controller.Dockerfile -t ghcr.io/splitwise/splitwise-controller:0.1.0 .
# Build and runtime share Debian 12 (bookworm): the bundled libraries match its glibc.
ARG DEBIAN=bookworm

FROM debian:${DEBIAN} AS build
WORKDIR /src
# setup.sh and build.sh are the ones CI and developers use; setup.sh first and alone, so
# its layer (the packages) outlives source changes.
COPY scripts/setup.sh scripts/
RUN ./scripts/setup.sh
COPY . .
RUN BUILD_DIR=/build CMAKE_ARGS="-DSPLITWISE_CUDA=OFF -DSPLITWISE_NATIVE=OFF -DBUILD_TESTING=OFF" \
    ./scripts/build.sh --target splitwise-controller
RUN strip /build/controller/splitwise-controller && \
    ./scripts/images/bundle_libs.sh /opt/splitwise/lib /build/controller/splitwise-controller

# glibc, CA certificates and a nonroot user (65532); no shell, no package manager. The
# chart runs it with a read-only root filesystem: the controller writes no files.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="splitwise-controller" \
      org.opencontainers.image.description="Splitwise operator: InferenceCluster controller"
COPY --from=build /opt/splitwise/lib/ /opt/splitwise/lib/
COPY --from=build /build/controller/splitwise-controller /usr/local/bin/splitwise-controller
ENV LD_LIBRARY_PATH=/opt/splitwise/lib
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/splitwise-controller"]
