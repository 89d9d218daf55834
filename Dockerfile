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
COPY pyproject.toml README.md ./
COPY api ./api
COPY shared ./shared
COPY workers ./workers
# The pip cache lives in a BuildKit cache mount, not in the image: rebuilds after a code change
# reuse the downloaded wheels (numpy, opencv, faiss) without growing the image.
RUN --mount=type=cache,target=/root/.cache/pip pip install .

# Non-root; /data is created here, owned by that user, so a named volume mounted there starts
# with the same owner.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin recog \
    && mkdir /data && chown recog /data
USER recog
WORKDIR /data

EXPOSE 8080
ENTRYPOINT ["recog"]
CMD ["serve", "--port", "8080"]
