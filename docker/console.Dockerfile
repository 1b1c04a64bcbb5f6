# syntax=docker/dockerfile:1.7
# kairos-console: the operator console (a page with server-sent events, the kill switch), reading the
# services only through their APIs (ADR 0090). Build from the repository root:
#   docker build -f docker/console.Dockerfile -t kairos/console .
# The locked runtime dependencies (uv.lock, no dev group, no training extra) go into a venv that the
# slim runtime stage copies without uv or any compiler; the same set as the inference image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

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
COPY gen/python gen/python
COPY python python
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/kairos/bin/python --no-deps ./gen/python .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 kairos \
 && useradd --system --uid 10001 --gid kairos --home-dir /var/lib/kairos --create-home kairos
COPY --from=build /opt/kairos /opt/kairos
ENV PATH=/opt/kairos/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KAIROS_CONSOLE_ADDR=0.0.0.0:7700
USER 10001:10001
WORKDIR /var/lib/kairos
EXPOSE 7700
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:7700/healthz', timeout=3)"]
ENTRYPOINT ["kairos-console"]
