# syntax=docker/dockerfile:1
# A router-only image without CUDA (about a tenth of the worker image), for running the
# router outside the operator or in front of existing workers. Clusters the operator
# manages run the router from the worker image (one image per InferenceCluster).
#   docker build -f scripts/images/router.Dockerfile -t ghcr.io/splitwise/splitwise-router:0.1.0 .
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
    ./scripts/build.sh --target splitwise-router
RUN strip /build/workers/router/splitwise-router && \
    ./scripts/images/bundle_libs.sh /opt/splitwise/lib /build/workers/router/splitwise-router

# glibc, CA certificates and a nonroot user (65532); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="splitwise-router" \
      org.opencontainers.image.description="Splitwise router: OpenAI-compatible HTTP API and request placement"
COPY --from=build /opt/splitwise/lib/ /opt/splitwise/lib/
COPY --from=build /build/workers/router/splitwise-router /usr/local/bin/splitwise-router
ENV LD_LIBRARY_PATH=/opt/splitwise/lib
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/splitwise-router"]
