# The ShieldX API and the `shieldx` command (migrations included).
# Build: docker build -f deploy/k8s/images/api.Dockerfile .
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 shieldx \
 && useradd --system --uid 10001 --gid 10001 --no-create-home shieldx
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY db ./db
RUN pip install --no-cache-dir . && python -c "import shieldx"
ENV SHIELDX_ROOT=/app PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"
CMD ["shieldx", "serve", "--host", "0.0.0.0", "--port", "8000"]
