# syntax=docker/dockerfile:1
# One image for every part of the service; the command picks the part:
#   docker run recog serve --port 8080      the API
#   docker run recog worker                 a recognition worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECOG_DATA_DIR=/data

WORKDIR /src
# Dependencies first, from pyproject.toml alone: a change of code reuses this layer instead of
# reinstalling numpy, opencv and faiss. The pip cache lives in a BuildKit cache mount, not in the
# image.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY api ./api
COPY shared ./shared
COPY workers ./workers
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps .

# Non-root; /data and the folders volumes are mounted on inside it are created here, owned by that
# user, so named volumes mounted there start with the same owner (a worker can save its indexes).
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin recog \
    && mkdir -p /data/blobs /data/indexes && chown -R recog /data
USER recog
WORKDIR /data

EXPOSE 8080
ENTRYPOINT ["recog"]
CMD ["serve", "--port", "8080"]
