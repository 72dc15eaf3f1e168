# syntax=docker/dockerfile:1
# One image for every bulkflow process: `bulkflow migrate` and
# `bulkflow serve --role api|agents|sink`. See deploy/README.md.
FROM python:3.11-slim

# BULKFLOW_API_HOST: listen on every interface (the default, 127.0.0.1, is
# unreachable from outside the container). BULKFLOW_STATE_DIR: writable state
# (demo files, Faust's data folder, the embedded ClickHouse when no server
# is configured).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    BULKFLOW_API_HOST=0.0.0.0 \
    BULKFLOW_API_PORT=8787 \
    BULKFLOW_STATE_DIR=/var/lib/bulkflow

WORKDIR /app

# Dependencies first, in their own layer: code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The whole checkout: the package reads sql/, clickhouse/ and deploy/ from it at
# run time (PROJECT_ROOT), hence the editable install in place.
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -e . \
    && groupadd --system --gid 10001 bulkflow \
    && useradd --system --uid 10001 --gid bulkflow --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bulkflow \
    && mkdir -p /var/lib/bulkflow \
    && chown bulkflow:bulkflow /var/lib/bulkflow

USER 10001:10001
EXPOSE 8787

# Default: all three roles in one process (embedded ClickHouse under
# /var/lib/bulkflow). compose.yaml and deploy/k8s run each role on its own.
CMD ["bulkflow", "serve"]
