# The detector, built from this repository. One image serves every command:
#   docker run IMAGE --bootstrap-servers kafka:9092          -> detector run (the entrypoint)
#   docker run --entrypoint detector IMAGE simulate ...       -> the traffic simulator
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY detector ./detector
RUN pip install .

# Pipelines and scenarios are data, read by path (see docker-compose.yml).
COPY pipelines /app/pipelines
COPY benchmarks/scenarios /app/benchmarks/scenarios

# Runs unprivileged; its working directory holds the rollback hook's and the Alertmanager sink's state files.
RUN useradd --system --uid 10001 --home-dir /var/lib/detector --create-home detector
USER detector
WORKDIR /var/lib/detector

ENTRYPOINT ["detector", "run"]
CMD ["--pipeline", "/app/pipelines/default.toml"]
