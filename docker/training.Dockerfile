# syntax=docker/dockerfile:1.7
# kairos-train: the training CLI (data import, features, walk-forward training, ONNX export, MLflow).
# Build from the repository root:  docker build -f docker/training.Dockerfile -t kairos/training .
# A batch job, not a service: no ports, no healthcheck; compose runs it under the `training` profile.
# Includes the locked `training` extra (torch runs on the CPU; the registry's wheel is large).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_VERSION=0.13.8 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==${UV_VERSION}
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY gen/python/pyproject.toml gen/python/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --locked --no-dev --no-emit-project --no-emit-package kairos-proto --extra training --format requirements-txt -o /tmp/requirements.txt \
 && uv venv /opt/kairos \
 && uv pip install --python /opt/kairos/bin/python --require-hashes -r /tmp/requirements.txt
# The generated contracts (gen/python, distribution kairos-proto) and the hand-written code (python/).
COPY gen/python gen/python
COPY python python
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/kairos/bin/python --no-deps ./gen/python .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 kairos \
 && useradd --system --uid 10001 --gid kairos --home-dir /var/lib/kairos --create-home kairos
COPY --from=build /opt/kairos /opt/kairos
ENV PATH=/opt/kairos/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/kairos
ENTRYPOINT ["kairos-train"]
CMD ["--help"]
