# syntax=docker/dockerfile:1.7
# kairos/ops: the small operational tools on distroless, non-root: kairos-streams (applies the
# JetStream stream definitions, baked in at /etc/kairos/streams) and kairos-healthprobe (gRPC health).
# Build from the repository root:  docker build -f docker/ops.Dockerfile -t kairos/ops .
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
ENV CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false
WORKDIR /src/tools/deploy
COPY tools/deploy/go.mod tools/deploy/go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY tools/deploy ./
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/kairos-streams ./cmd/kairos-healthprobe

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/kairos-streams /out/kairos-healthprobe /usr/local/bin/
COPY deploy/nats/streams /etc/kairos/streams
USER 65532:65532
ENV KAIROS_STREAMS_DIR=/etc/kairos/streams
ENTRYPOINT ["/usr/local/bin/kairos-streams"]
