# syntax=docker/dockerfile:1
# CPU image that runs `pixrag` (docs/DOCKER.md). Build:  docker build -t pixrag .
# Air-gapped, with the CLIP model inside the image (no Hub at run time):
#   hf download openai/clip-vit-base-patch32 --local-dir models/clip
#   docker build --build-arg CLIP_MODEL=/models/clip -t pixrag .
FROM python:3.11-slim

# Pinned: the CPU build from PyTorch's own index (PyPI's default wheel is a multi-GB CUDA build).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A Hub id (downloaded on first use into /data/hf) or a folder under /models baked in from the
# build context's models/ folder.
ARG CLIP_MODEL=openai/clip-vit-base-patch32

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIXRAG_DATA_DIR=/data \
    PIXRAG_EMBEDDING__MODEL=${CLIP_MODEL} \
    HF_HOME=/data/hf \
    XDG_CACHE_HOME=/data/cache \
    ORT_DISABLE_TELEMETRY=1 \
    ANONYMIZED_TELEMETRY=False \
    HF_HUB_DISABLE_TELEMETRY=1

# glib/gomp: opencv (used by the OCR engine) needs them even in its headless build.
# Not pinned: the distribution's security updates should reach a rebuilt image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY core ./core
COPY bot ./bot
RUN pip install .

# models/ holds only a README unless a model folder was put there before the build.
COPY models/ /models/
RUN case "${CLIP_MODEL}" in \
      /*) test -f "${CLIP_MODEL}/config.json" \
          || { echo "no CLIP model at ${CLIP_MODEL}: download it into models/ first" >&2; exit 1; } ;; \
    esac

# uid 1000: a bind-mounted host folder must be writable by it (docs/DOCKER.md). /models too:
# a named volume there (docker-compose.yml, HF_HOME=/models) takes its owner from the image.
RUN useradd --create-home --uid 1000 --user-group pixrag && mkdir -p /data && chown pixrag /data /models
USER 1000:1000
VOLUME ["/data"]
# Slack HTTP mode ([slack] mode = "http") listens here.
EXPOSE 3000

# Store, catalog and a model forward pass, read-only (`pixrag health --skip-model` is lighter).
HEALTHCHECK --interval=5m --timeout=2m --start-period=5m --retries=3 CMD ["pixrag", "health"]

ENTRYPOINT ["pixrag"]
CMD ["--help"]
