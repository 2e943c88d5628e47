# syntax=docker/dockerfile:1
# One image for every role: `serve` (web), `worker` (GPU), `migrate`. torch is the CPU or a CUDA build:
#   docker build -t visionary-art .                                  # CPU (web processes, CPU-only workers)
#   docker build --build-arg TORCH_VARIANT=cu126 -t visionary-art .  # CUDA (any CUDA build PyTorch publishes)
# The CUDA runtime comes inside the torch wheels; the node brings only the driver (NVIDIA container toolkit).
# Models are never baked in: they live on the volume mounted at /data (VA_DATA_DIR), under models/.

# --- the browser app: frontend/dist ---
FROM node:22-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# --- the server ---
FROM python:3.11-slim-bookworm
# cpu, or a CUDA build of PyTorch's index: cu126, cu128, ... (the node's driver must support it).
ARG TORCH_VARIANT=cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VA_HOST=0.0.0.0 \
    VA_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# tini is PID 1: it forwards SIGTERM to Python (whose handlers stop accepting, or finish and hand back jobs) and
# reaps children. Every wheel bundles its native libraries (opencv-headless needs no GUI libraries).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 va \
    && useradd --system --uid 10001 --gid va --create-home --home-dir /home/va --shell /usr/sbin/nologin va

WORKDIR /app
# torch first, from PyTorch's index for the chosen variant, at the version requirements.txt pins; the rest of
# requirements.txt then finds that torch already satisfied (2.x.y+cu126 meets ==2.x.y) and keeps it.
COPY requirements.txt ./
RUN torch_version="$(sed -n 's/^torch==//p' requirements.txt)" \
    && test -n "$torch_version" \
    && pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${torch_version}" \
    && pip install -r requirements.txt

# The code stays root-owned and read-only to the service user.
COPY run.py ./
COPY config/ config/
COPY server/ server/
COPY handlers/ handlers/
COPY inference/ inference/
COPY --from=frontend /src/frontend/dist/ frontend/dist/
# Bytecode now, so a read-only root filesystem costs nothing at start-up.
RUN python -m compileall -q run.py config server handlers inference

RUN mkdir -p /data && chown va:va /data
VOLUME ["/data"]

USER 10001:10001
# 8888: HTTP and /ws of `serve`; 9100: a worker's /metrics when VA_WORKER_METRICS_PORT=9100.
EXPOSE 8888 9100
ENTRYPOINT ["/usr/bin/tini", "--", "python", "run.py"]
CMD ["serve", "--port", "8888"]
