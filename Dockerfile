# Channel Sync daemon image: `docker build -t channelsync .`
# Run: mount the config (and secret files) read-only, keep secrets in env or files,
#   docker run -d --name channelsync --stop-timeout 60 \
#     -v /etc/channelsync:/etc/channelsync:ro -v channelsync-data:/var/lib/channelsync \
#     --env-file /etc/channelsync/channelsync.env -p 127.0.0.1:8787:8787 channelsync
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A dedicated unprivileged user; its home holds the SQLite store when no PostgreSQL is used.
RUN groupadd --system channelsync \
    && useradd --system --gid channelsync --home-dir /var/lib/channelsync --create-home \
       --shell /usr/sbin/nologin channelsync

COPY . /tmp/channelsync-src
RUN pip install /tmp/channelsync-src && rm -rf /tmp/channelsync-src

USER channelsync
WORKDIR /var/lib/channelsync
VOLUME ["/var/lib/channelsync"]

# The config must set `schedule.health_listen: 0.0.0.0:8787` for /metrics to be reachable
# from outside the container; the health check below runs inside it.
ENV CHANNELSYNC_CONFIG=/etc/channelsync/channelsync.yaml \
    CHANNELSYNC_HEALTH_URL=http://127.0.0.1:8787/healthz
EXPOSE 8787

# /healthz answers 503 until the first cycle finishes (a first full pull can take minutes),
# then 503 again when a connection has not succeeded for `schedule.stale_after`.
# An HA standby answers 200.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; urllib.request.urlopen(os.environ['CHANNELSYNC_HEALTH_URL'], timeout=8); sys.exit(0)"]

# SIGTERM (docker stop) commits the page or batch in hand and exits 0.
STOPSIGNAL SIGTERM
CMD ["channelsync", "run"]
