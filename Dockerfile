# consentgate: the gateway on the embedded ClickHouse store (chDB), or without chDB for a ClickHouse server.
#   docker build -t consentgate .
#   docker build --build-arg VARIANT=slim -t consentgate:slim .   # no chDB (~550 MB less): store = "http(s)://..."
# The secret comes from the environment (CONSENTGATE_SECRET_KEY), never from the image or the config file.
#   docker run -p 8000:8000 -v consentgate-data:/var/lib/consentgate \
#     -v $PWD/consentgate.toml:/etc/consentgate/consentgate.toml:ro \
#     -e CONSENTGATE_SECRET_KEY=... consentgate
# In the config, set store = "chdb:///var/lib/consentgate" so data lives on the volume.
# The dashboard's chart library comes from npm (package-lock.json), like scripts/setup installs it.
FROM node:20-bookworm-slim AS charts
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm
# full: with the embedded store (chDB); slim: for a ClickHouse server or cluster only
ARG VARIANT=full

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --uid 10001 --home /var/lib/consentgate --create-home consentgate
WORKDIR /opt/consentgate
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY analytics ./analytics
COPY banner ./banner
# The slim variant installs every dependency except chDB (clickhouse-connect without its [chdb] extra).
RUN if [ "$VARIANT" = "slim" ]; then \
        python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d.replace('[chdb]', '') for d in deps if not d.startswith('chdb')))" > /tmp/requirements.txt \
        && pip install -r /tmp/requirements.txt && pip install --no-deps . && rm /tmp/requirements.txt; \
    else pip install .; fi \
    && mkdir -p /etc/consentgate
COPY --from=charts /build/node_modules/chart.js/dist/chart.umd.min.js /opt/consentgate/assets/chart.umd.min.js
ENV CONSENTGATE_CHARTJS=/opt/consentgate/assets/chart.umd.min.js

USER 10001
EXPOSE 8000
VOLUME ["/var/lib/consentgate"]
# Ready means: the store takes writes, the spool has room, revocations are in sync (503 otherwise).
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
# SIGTERM (docker stop) makes the gateway stop taking hits and write its spool into the store before it exits.
STOPSIGNAL SIGTERM
CMD ["consentgate", "serve", "--config", "/etc/consentgate/consentgate.toml", "--host", "0.0.0.0", "--port", "8000"]
