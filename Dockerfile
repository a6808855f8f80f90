# The hub worker image: `hub run` consumes Kafka, runs the Bytewax flow, writes ClickHouse.
# Used by docker-compose.yml (service hub-worker); configure with HUB_* environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs, so the build does not depend on local files (.venv, caches).
COPY pyproject.toml uv.lock ./
COPY flows ./flows
COPY operators ./operators
COPY schemas ./schemas
COPY connectors ./connectors
COPY config ./config
# Exact versions from uv.lock, the same ones CI tested.
RUN pip install uv==0.13.9 \
    && uv export --locked --no-dev --no-emit-project -o /tmp/requirements.txt \
    && pip install --require-hashes -r /tmp/requirements.txt \
    && pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /var/lib/hub --create-home hub

USER hub
WORKDIR /var/lib/hub
# Prometheus metrics (HUB_METRICS__PORT).
EXPOSE 9108
CMD ["hub", "run"]
