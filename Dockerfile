# syntax=docker/dockerfile:1
# The gitgate container image:
#
#   docker build -t gitgate:local .
#   docker run --rm -v "$PWD/my-config:/etc/gitgate:ro" gitgate:local
#
# It runs `gitgate run --config /etc/gitgate/gitgate.yaml` as uid 65532 with nothing
# else in the image: no shell, no package manager. Writable state (the generated CA)
# lives under /var/lib/gitgate/ca (the certificate, to share with sandboxes) and
# /var/lib/gitgate/private (the CA key, gitgate's alone), both owned by 65532 so that a
# fresh Docker volume mounted there is writable. See examples/README.md.

# Build stage: the release binary from the locked dependency versions. Only the
# workspace's own directories are copied, so target/ and .git never enter the build.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY policy policy
COPY certs certs
COPY proxy proxy
COPY sidecar sidecar
COPY tests tests
COPY examples examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gitgate --bin gitgate \
    && install -D -m 0755 target/release/gitgate /out/gitgate \
    && install -d -m 0755 /out/state/ca \
    && install -d -m 0700 /out/state/private

# Final stage: distroless "cc" (glibc and libgcc, which the binary links against, plus
# CA roots and /etc/passwd), running as its non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gitgate /usr/local/bin/gitgate
COPY --from=build --chown=65532:65532 /out/state /var/lib/gitgate
# Numeric, so Kubernetes' runAsNonRoot can verify it (65532 is distroless' "nonroot").
USER 65532:65532
# 3128: the proxy (`listen:`); 9901: /healthz, /readyz, /metrics (`admin:`).
EXPOSE 3128 9901
# No shell or curl in the image: gitgate probes its own admin endpoint. The config must
# enable it, e.g. `admin: 127.0.0.1:9901` (or 0.0.0.0:9901 for Kubernetes probes).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gitgate", "health", "--url", "http://127.0.0.1:9901/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gitgate"]
CMD ["run", "--config", "/etc/gitgate/gitgate.yaml"]
