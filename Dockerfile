# toloka-kafka-connector: `docker build -t toloka-kafka-connector .`
# The entrypoint is the CLI: `docker run IMAGE run` (the default), `upload`, `poll`, `simulator` …
#
# BASE_IMAGE: any Python 3.11+ image with `python` and `pip` on PATH (the default: the official
# slim one). BUILD_IMAGE: where the wheels are built, the base unless set; an offline machine can
# give one whose pip finds every wheel locally (`make compose-images` builds both from Debian's
# packages, see tests/e2e/images.py).
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG BUILD_IMAGE=${BASE_IMAGE}

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# confluent-kafka's manylinux wheel bundles librdkafka: no compiler or system library needed.
COPY pyproject.toml README.md ./
COPY connector ./connector
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE}
# Inside a container the endpoints must be reachable from outside it (Prometheus, probes).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONNECTOR_METRICS_HOST=0.0.0.0 \
    CONNECTOR_LOG_FORMAT=json
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin connector
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 9400
# Liveness: every role's loop went round within the last minute (`healthcheck --ready` for
# readiness). It reads CONNECTOR_METRICS_PORT like the connector does.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["toloka-connector", "healthcheck"]
ENTRYPOINT ["toloka-connector"]
CMD ["run"]
