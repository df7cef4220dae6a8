# postgres_exporter (Debian's package) with the ShieldX queries baked in, so the
# queries shipped are the ones tested (deploy/monitoring/exporter/queries.yaml).
# Build: docker build -f deploy/k8s/images/postgres-exporter.Dockerfile .
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home exporter \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      prometheus-postgres-exporter ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/monitoring/exporter/queries.yaml /etc/shieldx/queries.yaml
USER 10001
EXPOSE 9187
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9187/ || exit 1
CMD ["prometheus-postgres-exporter", "--web.listen-address=:9187", "--extend.query-path=/etc/shieldx/queries.yaml"]
