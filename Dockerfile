# syntax=docker/dockerfile:1
# Multi-stage build: wheels are built in the first stage, the runtime stage
# has no compiler and runs as an unprivileged user.
FROM python:3.12-slim AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY storage ./storage
COPY billing ./billing
COPY server ./server
COPY client ./client
COPY loadtest ./loadtest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DIGIS_HOST=0.0.0.0 \
    DIGIS_PORT=8080 \
    DIGIS_DATA_DIR=/var/lib/digis
RUN useradd --system --create-home --home-dir /var/lib/digis --uid 10001 digis
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER digis
WORKDIR /var/lib/digis
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
# In production set DATABASE_URL and REDIS_URL; without them the image runs
# embedded PostgreSQL and Redis in /var/lib/digis (mount a volume there).
ENTRYPOINT ["digis"]
CMD ["serve"]
