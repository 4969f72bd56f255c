# syntax=docker/dockerfile:1
#
# gatehouse as a container (docs/deploy.md, "Container").
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t gatehouse .
#   docker run -d --name gatehouse --network host --restart unless-stopped \
#     -v /srv/gatehouse/etc:/etc/gatehouse:ro -v gatehouse-state:/var/lib/gatehouse gatehouse
#   docker kill -s HUP gatehouse      # reload the configuration
#
# Host networking is the recommended mode: gatehouse blacklists by client
# address, which must be the real one, and the TURN relay range is
# thousands of UDP ports.

# Build stage: the same build as `make build` (static, CGO_ENABLED=0,
# version stamped), cross-compiled on the build host for the target platform.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
# libcap2-bin for setcap (below): the runtime image has no tools to do it there.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# After the build:
# - setcap lets the non-root user bind ports below 1024 (80, 443, 389, 636).
#   Docker already allows that by default (net.ipv4.ip_unprivileged_port_start=0);
#   the file capability covers runtimes that do not. With --cap-drop ALL, add
#   --cap-add NET_BIND_SERVICE back, or the kernel refuses to start the binary.
# - /out/state becomes the state volume's mount point, owned by the runtime
#   user, so that a new named volume starts out writable for it.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gatehouse ./cmd/gatehouse \
 && setcap cap_net_bind_service=+ep /out/gatehouse \
 && mkdir -p /out/state && chown 65532:65532 /out/state && chmod 0750 /out/state

# Runtime: distroless "static", nonroot variant. The binary is static, so it
# needs no libc; the image brings only what a static Go server uses: CA
# certificates (tls.target_cas empty means the system roots), time zone
# data, /etc/passwd with the user nonroot (65532). No shell, no package
# manager, nothing to patch but the binary. debian:bookworm-slim would add a
# shell and ~75 MB of packages for no use; the HEALTHCHECK runs the binary.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
COPY --from=build --chown=65532:65532 /out/state /var/lib/gatehouse
USER 65532:65532

# Configuration (gatehouse.yaml, certificates, keys readable by uid 65532)
# and the blacklist's state file (blacklist.state: /var/lib/gatehouse/state.json).
VOLUME ["/etc/gatehouse", "/var/lib/gatehouse"]

# The contract's listen ports, TURN (UDP and TCP, TLS) and the admin UI.
# The TURN relay range (turn.relay_ports) is left out on purpose: publishing
# thousands of ports with -P is slow and heavy; use --network host, or
# publish the configured range explicitly (-p 49152-50151:49152-50151/udp).
EXPOSE 80/tcp 443/tcp 5060/tcp 5061/tcp 389/tcp 636/tcp 1720/tcp 1300/tcp \
       3478/udp 3478/tcp 5349/tcp 8443/tcp

# GET /healthz on admin.listen, through the binary itself (see `gatehouse health`).
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/gatehouse", "health", "-config", "/etc/gatehouse/gatehouse.yaml"]

# SIGTERM (docker stop) drains for limits.shutdown_timeout (30s by default):
# give `docker stop -t 45` or stop_grace_period: 45s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run", "-config", "/etc/gatehouse/gatehouse.yaml"]
