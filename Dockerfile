# CPU image that runs `pixrag`. Build: docker build -t pixrag .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIXRAG_DATA_DIR=/data \
    HF_HOME=/data/hf \
    ORT_DISABLE_TELEMETRY=1 \
    ANONYMIZED_TELEMETRY=False \
    HF_HUB_DISABLE_TELEMETRY=1

# libgl/glib: opencv (used by the OCR engine) needs them even in its headless build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The CPU build of torch (the default PyPI wheel is a multi-GB CUDA build).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
COPY pyproject.toml README.md ./
COPY core ./core
COPY bot ./bot
RUN pip install .

RUN useradd --create-home --uid 1000 pixrag && mkdir -p /data && chown pixrag /data
USER pixrag
VOLUME ["/data"]
ENTRYPOINT ["pixrag"]
CMD ["--help"]
