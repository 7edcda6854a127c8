# syntax=docker/dockerfile:1
# lakeproxy: the S3 gateway and REST API of `lake serve`, as a small non-root image.
#
#   docker build -t lakeproxy .
#   docker run -p 8000:8000 -v lake-data:/data lakeproxy
#
# Settings come from LAKE_* variables or a TOML file named by LAKE_CONFIG (docs/configuration.md).

# --- build: the project and every dependency as wheels ----------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lakeproxy ./lakeproxy
RUN pip wheel --wheel-dir /wheels .

# --- runtime: the wheels installed, no compiler, no source tree -------------------------------
FROM python:3.11-slim AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LAKE_DATA_DIR=/data \
    LAKE_LOG_FORMAT=json \
    LAKE_PORT=8000
RUN groupadd --system --gid 10001 lake \
    && useradd --system --uid 10001 --gid lake --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin lake \
    && mkdir -p /data \
    && chown lake:lake /data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels lakeproxy
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# slim has no curl: ask /healthz with the interpreter the image already has.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LAKE_PORT', '8000') + '/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["lake", "serve", "--host", "0.0.0.0"]
