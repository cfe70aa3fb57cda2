# The ledger image: the `ledger` command line on PostgreSQL (or SQLite in /data).
# One COPY of the build context: .dockerignore keeps out what the package does not need, so
# a new package folder is in the image without a change here (tests/test_image.py builds this
# file tree and installs it, as `docker build` would).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . && cd / && rm -rf /src

# Not root: the ledger needs no privilege; /data is its home and the default SQLite store's folder.
RUN useradd --system --user-group --uid 10001 --home-dir /data --create-home ledger
USER ledger
WORKDIR /data

# `ledger serve` (docs/spec.md §15) listens here once it exists; its compose service checks /readyz.
EXPOSE 8080
# Each compose service brings its own check (the worker: `ledger status --check`); one-off
# commands need none.
HEALTHCHECK NONE
ENTRYPOINT ["ledger"]
CMD ["--help"]
