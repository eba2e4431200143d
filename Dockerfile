# rsgo as one container: gunicorn (`rsgo serve`) under tini, as the non-root user rsgo (uid 10001),
# data in the volume /data, port 8080. The Docker socket is mounted by the user (README: "Run it
# as a container").
#
#   docker build -t rsgo .
#   docker build --build-arg BASE_IMAGE=rsgo-base/debian:bookworm -t rsgo .   # without Docker Hub
#
# BASE_IMAGE is any Debian 12 (bookworm) image: the slim Python image (default), or a plain
# Debian root filesystem without Python (scripts/build-base-image makes one with debootstrap);
# then python3 (3.11) comes from Debian. Written for both the classic builder and BuildKit.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# unixODBC with the PostgreSQL (psqlODBC) and SQL Server (FreeTDS) drivers, so both SQL observers
# work out of the box; tini as PID 1 passes SIGTERM on to gunicorn (and reaps zombies).
# tdsodbc registers "FreeTDS" in /etc/odbcinst.ini itself; when a package version does not,
# it is registered here. The build fails unless both drivers are registered.
RUN set -eux; \
    packages="ca-certificates tini unixodbc odbc-postgresql tdsodbc"; \
    command -v python3 >/dev/null || packages="$packages python3 python3-venv"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    if ! odbcinst -q -d -n FreeTDS >/dev/null 2>&1; then \
        printf '[FreeTDS]\nDescription=FreeTDS (SQL Server)\nDriver=%s\n' \
            "$(find /usr/lib -name libtdsodbc.so | head -n 1)" > /tmp/freetds.ini; \
        odbcinst -i -d -f /tmp/freetds.ini; rm /tmp/freetds.ini; \
    fi; \
    odbcinst -q -d -n FreeTDS; \
    odbcinst -q -d -n "PostgreSQL Unicode"; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version'; \
    groupadd --system --gid 10001 rsgo; \
    useradd --system --uid 10001 --gid rsgo --home-dir /data --no-create-home --shell /usr/sbin/nologin rsgo; \
    mkdir -p /data; chown rsgo:rsgo /data

# The dependencies first, in a layer of their own (a code change does not reinstall them), from
# the list in pyproject.toml. When the build context has a wheels/ directory, pip installs from
# it alone (for builds without PyPI: air-gapped, or behind a TLS-inspecting proxy whose CA the
# image does not trust); make it with
#   pip wheel -w wheels . "setuptools>=68" wheel
# (`wheels*` matches nothing without it; pyproject.toml keeps the COPY from being empty.)
COPY pyproject.toml wheels* /tmp/deps/
RUN set -eux; \
    if ls /tmp/deps/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/deps; fi; \
    python3 -m venv /opt/rsgo; \
    /opt/rsgo/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/deps/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/deps/requirements.txt; \
    /opt/rsgo/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /tmp/deps/requirements.txt "setuptools>=68" wheel; \
    rm -rf /tmp/deps

# The app, installed like any wheel (not editable): the templates and static files travel inside
# the package (pyproject.toml maps the repository's templates/ and static/ to rsgo/templates and
# rsgo/static), so the sources are not kept in the image.
COPY README.md pyproject.toml /tmp/src/
COPY rsgo /tmp/src/rsgo
COPY templates /tmp/src/templates
COPY static /tmp/src/static
RUN set -eux; \
    /opt/rsgo/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index \
        --no-build-isolation /tmp/src; \
    rm -rf /tmp/src; \
    cd /; /opt/rsgo/bin/python -c 'import os, rsgo.assets as a; assert a.__file__.startswith("/opt/rsgo/"), a.__file__; assert all(os.path.isfile(os.path.join(a.asset_folder(d), f)) for d, f in (("templates", "base.html"), ("static", "rsgo.css")))'

ENV PATH=/opt/rsgo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RSGO_DATA_DIR=/data \
    RSGO_HOST=0.0.0.0 \
    RSGO_PORT=8080

USER rsgo
VOLUME /data
EXPOSE 8080

# /healthz answers without a sign-in; python's urllib, so the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RSGO_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["tini", "--"]
CMD ["rsgo", "serve"]
