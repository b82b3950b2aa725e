# The same steps as the README: a venv with requirements.txt, the classifier exported and the
# face mesh converted once (torch, onnx, tflite only in the build stage), then uvicorn app.main:app.
FROM python:3.11-slim AS model
WORKDIR /build
COPY requirements.txt requirements-model.txt ./
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/* \
    && python -m venv /venv && /venv/bin/pip install --no-cache-dir -r requirements.txt -r requirements-model.txt
COPY app ./app
COPY scripts ./scripts
RUN /venv/bin/python scripts/export_classifier.py --model-dir /build/models \
    && /venv/bin/python scripts/fetch_face_mesh.py --model-dir /build/models

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/app/data \
    MODEL_DIR=/app/models

WORKDIR /app

RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --home-dir /app app

COPY requirements.txt .
# pdqhash is an sdist (C++): a compiler while installing, removed in the same layer
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && python -m venv /app/.venv && /app/.venv/bin/pip install --no-cache-dir -r requirements.txt \
    && apt-get purge -y g++ && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY app ./app
COPY --from=model /build/models ./models
RUN mkdir -p /app/data/images /app/data/analysis && chown -R app:app /app/data

USER 10001:10001
VOLUME ["/app/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/app/.venv/bin/python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]

CMD ["/app/.venv/bin/python", "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
