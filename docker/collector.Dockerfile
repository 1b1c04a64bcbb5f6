# syntax=docker/dockerfile:1.7
# kairos-collector: bridge listener, market-data gRPC, bars, NATS fan-out, the StreamPredict link.
# Build from the repository root:  docker build -f docker/collector.Dockerfile -t kairos/collector .
# Targets: `runtime` (default, static binary on distroless, non-root) and `dev` (the Go toolchain with
# the source mounted by docker-compose.dev.yml).
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORKDIR /src
# Workspace mode (go.work): the services' go.sum files rely on go.work.sum, and every module the
# workspace uses must be present. Modules download during the build into a cache mount.
COPY go.work go.work.sum* ./
COPY gen/go gen/go
COPY go/collector go/collector
COPY go/execution go/execution
COPY go/bridgelink go/bridgelink
COPY go/envflag go/envflag
COPY go/auth go/auth
COPY go/testkit go/testkit
COPY go/tlsreload go/tlsreload
COPY tools/deploy tools/deploy
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/kairos-collector ./go/collector/cmd/kairos-collector \
 && cd tools/deploy && GOWORK=off go build -trimpath -ldflags="-s -w" -o /out/kairos-healthprobe ./cmd/kairos-healthprobe \
 && mkdir -p /out/var/lib/kairos

FROM ${GO_IMAGE} AS dev
ENV GOFLAGS=-buildvcs=false
# docker-compose.dev.yml mounts the repository at /src; `go run` builds it in workspace mode.
WORKDIR /src
COPY --from=build /out/kairos-healthprobe /usr/local/bin/kairos-healthprobe
CMD ["go", "run", "./go/collector/cmd/kairos-collector"]

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/kairos-collector /out/kairos-healthprobe /usr/local/bin/
# Spool and state directory, owned by the distroless `nonroot` user (65532).
COPY --from=build --chown=65532:65532 /out/var/lib/kairos /var/lib/kairos
USER 65532:65532
# Inside a container the service must listen beyond loopback; publishing stays loopback-only in compose.
ENV KAIROS_COLLECTOR_BRIDGE_ADDR=0.0.0.0:7400 \
    KAIROS_COLLECTOR_GRPC_ADDR=0.0.0.0:7401 \
    KAIROS_COLLECTOR_METRICS_ADDR=0.0.0.0:9401 \
    KAIROS_HEALTHPROBE_ADDR=127.0.0.1:7401
WORKDIR /var/lib/kairos
EXPOSE 7400 7401 9401
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 CMD ["/usr/local/bin/kairos-healthprobe"]
ENTRYPOINT ["/usr/local/bin/kairos-collector"]
