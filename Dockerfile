# syntax=docker/dockerfile:1
FROM python:3.11-slim

# Keep this uv in step with the one that writes uv.lock (lock revision 5 needs a recent uv).
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /uvx /usr/local/bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1

WORKDIR /app

# Dependencies first, so source edits do not re-install them.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself (the wheel packages from pyproject, and the README it declares).
COPY README.md ./
COPY runtime ./runtime
COPY graphs ./graphs
COPY api ./api
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# Non-root; the embedded Postgres (used only without DATABASE_URL) refuses to run as root.
RUN useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /app/.sessiongraph \
    && chown app:app /app/.sessiongraph
USER app

ENV SESSIONGRAPH_HOST=0.0.0.0 \
    SESSIONGRAPH_PORT=8000 \
    LANGGRAPH_STRICT_MSGPACK=true \
    PATH=/app/.venv/bin:$PATH

EXPOSE 8000

# slim has no curl; urlopen raises (exit 1) on connection errors and non-2xx answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["sessiongraph", "serve"]
