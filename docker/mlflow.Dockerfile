# syntax=docker/dockerfile:1.7
# MLflow tracking server and model registry for the stack, on PostgreSQL with a volume for artifacts.
# Build from the repository root:  docker build -f docker/mlflow.Dockerfile -t kairos/mlflow .
# It runs the same MLflow version the services lock (uv.lock), plus the PostgreSQL driver.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_VERSION=0.13.8 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
# psycopg2-binary is not in uv.lock (no service talks to PostgreSQL from Python); pinned here.
ENV PSYCOPG2_VERSION=2.9.13
RUN pip install --no-cache-dir uv==${UV_VERSION}
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY gen/python/pyproject.toml gen/python/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --locked --no-dev --no-emit-project --no-emit-package kairos-proto --format requirements-txt -o /tmp/requirements.txt \
 && uv venv /opt/mlflow \
 && uv pip install --python /opt/mlflow/bin/python --require-hashes -r /tmp/requirements.txt \
 && uv pip install --python /opt/mlflow/bin/python psycopg2-binary==${PSYCOPG2_VERSION}

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --home-dir /var/lib/mlflow --create-home mlflow \
 && mkdir -p /var/lib/mlflow/artifacts && chown -R mlflow:mlflow /var/lib/mlflow
COPY --from=build /opt/mlflow /opt/mlflow
ENV PATH=/opt/mlflow/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/mlflow
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=3).status == 200 else 1)"]
# --backend-store-uri and --default-artifact-root come from compose / Kubernetes (they name secrets).
ENTRYPOINT ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
