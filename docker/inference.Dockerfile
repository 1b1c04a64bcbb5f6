# syntax=docker/dockerfile:1.7
# kairos-inference: ONNX Runtime behind gRPC StreamPredict, signals on NATS, models from MLflow.
# Build from the repository root:  docker build -f docker/inference.Dockerfile -t kairos/inference .
# Only the runtime dependencies locked in uv.lock are installed (no dev group, no training extra: no
# torch), into a venv that the slim runtime stage copies without any compiler or uv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG GO_IMAGE=golang:1.26.8-bookworm

FROM ${GO_IMAGE} AS probe
ENV CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false
WORKDIR /src/tools/deploy
COPY tools/deploy/go.mod tools/deploy/go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY tools/deploy ./
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/kairos-healthprobe ./cmd/kairos-healthprobe

# The serving feature kernel in C++ (cpp/features, ADR 0100): compiled here against the runtime
# image's own Python headers (the official image ships them) and pybind11 from uv.lock, so the
# runtime stage gets one .so and no compiler. kairos.features.native loads it from
# KAIROS_FEATURES_EXT; without it the server would run the numpy kernel (~130 us a call, ADR 0103).
FROM ${PYTHON_IMAGE} AS features
ENV UV_VERSION=0.13.8 UV_PYTHON_DOWNLOADS=never
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ cmake ninja-build \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir uv==${UV_VERSION}
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY gen/python/pyproject.toml gen/python/pyproject.toml
# Only pybind11 (a dev dependency: headers and CMake config), hash-checked at its locked version.
RUN uv export --locked --only-dev --no-emit-project --no-emit-package kairos-proto --format requirements-txt \
      | awk '/^[^ #]/ { keep = ($0 ~ /^pybind11==/) } keep' > /tmp/pybind11.txt \
 && grep -q '^pybind11==' /tmp/pybind11.txt \
 && pip install --no-cache-dir --require-hashes -r /tmp/pybind11.txt
COPY cpp/features cpp/features
RUN cmake -S cpp/features -B /tmp/cpp-features -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython3_EXECUTABLE="$(command -v python)" \
 && cmake --build /tmp/cpp-features \
 && mkdir -p /out \
 && cp /tmp/cpp-features/kairos_features_ext*.so /out/kairos_features_ext.so

FROM ${PYTHON_IMAGE} AS build
ENV UV_VERSION=0.13.8 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==${UV_VERSION}
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY gen/python/pyproject.toml gen/python/pyproject.toml
# Hash-checked install of exactly the locked runtime set; this layer survives source edits.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --locked --no-dev --no-emit-project --no-emit-package kairos-proto --format requirements-txt -o /tmp/requirements.txt \
 && uv venv /opt/kairos \
 && uv pip install --python /opt/kairos/bin/python --require-hashes -r /tmp/requirements.txt
# The generated contracts (gen/python, distribution kairos-proto) and the hand-written code (python/).
COPY gen/python gen/python
COPY python python
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/kairos/bin/python --no-deps ./gen/python .

FROM build AS dev
# docker-compose.dev.yml mounts ./python first on PYTHONPATH, so edits apply on restart.
ENV PATH=/opt/kairos/bin:$PATH PYTHONUNBUFFERED=1 \
    KAIROS_FEATURES_EXT=/opt/kairos/lib/kairos_features_ext.so
COPY --from=probe /out/kairos-healthprobe /usr/local/bin/kairos-healthprobe
COPY --from=features /out/kairos_features_ext.so /opt/kairos/lib/kairos_features_ext.so
ENTRYPOINT ["kairos-inference"]

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 kairos \
 && useradd --system --uid 10001 --gid kairos --home-dir /var/lib/kairos --create-home kairos
COPY --from=build /opt/kairos /opt/kairos
COPY --from=probe /out/kairos-healthprobe /usr/local/bin/kairos-healthprobe
COPY --from=features /out/kairos_features_ext.so /opt/kairos/lib/kairos_features_ext.so
ENV PATH=/opt/kairos/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KAIROS_FEATURES_EXT=/opt/kairos/lib/kairos_features_ext.so \
    PYTHONDONTWRITEBYTECODE=1 \
    KAIROS_INFERENCE_GRPC_ADDR=0.0.0.0:7501 \
    KAIROS_INFERENCE_METRICS_ADDR=0.0.0.0:9501 \
    KAIROS_HEALTHPROBE_ADDR=127.0.0.1:7501
USER 10001:10001
WORKDIR /var/lib/kairos
EXPOSE 7501 9501
# Model loading can take a while on first start (MLflow download, session warm-up).
HEALTHCHECK --interval=10s --timeout=4s --start-period=60s --retries=3 CMD ["kairos-healthprobe"]
ENTRYPOINT ["kairos-inference"]
