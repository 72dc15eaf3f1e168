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

WORKDIR /var/lib/bulkflow

# Dependencies first, in their own layer: code changes do not reinstall them.
COPY pyproject.toml README.md /tmp/build/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print(*tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A normal (non-editable) install: the wheel carries the SQL, the ClickHouse
# DDL and the local-service templates as package data, so the source tree is
# only needed to build it and /app is not kept.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps /src \
    && rm -rf /src \
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
