# consentgate: the gateway on the embedded ClickHouse store (chDB).
#   docker build -t consentgate .
#   docker run -p 8000:8000 -v consentgate-data:/var/lib/consentgate \
#     -v $PWD/consentgate.toml:/etc/consentgate/consentgate.toml:ro \
#     -e CONSENTGATE_SECRET_KEY=... consentgate
# In the config, set store = "chdb:///var/lib/consentgate" so data lives on the volume.
# The dashboard's chart library comes from npm (package-lock.json), like scripts/setup installs it.
FROM node:20-bookworm-slim AS charts
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --home /var/lib/consentgate --create-home consentgate
WORKDIR /opt/consentgate
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY analytics ./analytics
COPY banner ./banner
RUN pip install . && mkdir -p /etc/consentgate
COPY --from=charts /build/node_modules/chart.js/dist/chart.umd.min.js /opt/consentgate/assets/chart.umd.min.js
ENV CONSENTGATE_CHARTJS=/opt/consentgate/assets/chart.umd.min.js

USER consentgate
EXPOSE 8000
VOLUME ["/var/lib/consentgate"]
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
# SIGTERM (docker stop) makes the gateway stop taking hits and write its spool into the store before it exits.
STOPSIGNAL SIGTERM
CMD ["consentgate", "serve", "--config", "/etc/consentgate/consentgate.toml", "--host", "0.0.0.0", "--port", "8000"]
