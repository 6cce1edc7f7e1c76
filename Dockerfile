# One image for the four tasksaga services and their one-shot set-up commands.
#
# The command picks what runs (default: the API):
#   tasksaga-api | tasksaga-orchestrator | tasksaga-worker | tasksaga-notifier
#   tasksaga-migrate | tasksaga-topics QUEUE...
#
# The repository is copied whole to /app and installed in editable mode, because the code finds
# contracts/ (Avro schemas) and event-store/migrations/ (SQL) relative to its source tree.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg: used by example task steps. tini: PID 1 that forwards SIGTERM to the service (which
# stops cleanly on it) and reaps child processes such as ffmpeg.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 tasksaga \
    && useradd --system --uid 10001 --gid tasksaga --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tasksaga

WORKDIR /app

# Third-party dependencies in their own layer, rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(project['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps -e .

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["tasksaga-api"]
