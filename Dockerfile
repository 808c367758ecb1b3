# The farm's one image: `vexport serve` (API + pages), `vexport worker` (GPU or CPU), `vexport migrate`.
# It holds no CUDA: the NVIDIA Container Toolkit mounts the driver's libraries (libcuda,
# libnvidia-encode, libnvcuvid) into GPU containers at run time, and the PyNvVideoCodec and PyAV
# wheels bring the rest. compose.gpu.yml shows how to run it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    VEXPORT_DATA_DIR=/data

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
# The locked dependencies first, so this layer is rebuilt only when uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra gpu --no-install-project

# The code; the project is installed editable, so migrations/ and frontend/ (templates, static
# files the API serves) are found next to it.
COPY backend/ backend/
COPY gpu_worker/ gpu_worker/
COPY migrations/ migrations/
COPY frontend/ frontend/
RUN uv sync --frozen --no-dev --extra gpu

# Never root: scratch space and anything else written at run time live under /data.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin vexport \
    && mkdir -p /data/scratch \
    && chown -R vexport:vexport /data
USER vexport

EXPOSE 8000 9100
ENTRYPOINT ["vexport"]
CMD ["serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]
