# One image for every Sanad process; docker-compose.yml picks the process with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 sanad \
 && useradd --system --uid 10001 --gid sanad --home-dir /app --no-create-home --shell /usr/sbin/nologin sanad

# An empty named volume mounted here copies this directory's owner and mode, so the key file that
# `sanad keys init` writes (mode 0600) belongs to the same user the services run as, and nobody else.
RUN mkdir -p /var/lib/sanad/keys \
 && chown sanad:sanad /var/lib/sanad/keys \
 && chmod 0700 /var/lib/sanad/keys

WORKDIR /app

# Dependencies first: this layer survives code changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Code stays owned by root: the service user can read it but not change it.
COPY . ./
RUN pip install --no-deps -e .

USER sanad

EXPOSE 8000 8001 8002 8003 8004 8005 8006 8007

CMD ["sanad", "--help"]
