# PostgreSQL 15 + Patroni (Kubernetes DCS) + pg_cron + PL/Python (scipy) + pgBackRest.
# The postgres user gets uid 10001 before the packages create it, to match the
# pods' runAsUser. Build: docker build -f deploy/k8s/images/patroni.Dockerfile .
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 postgres \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/postgresql --create-home postgres \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 postgresql-15-cron postgresql-plpython3-15 python3-scipy python3-cryptography \
      patroni python3-kubernetes pgbackrest ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0775 /var/run/postgresql /var/lib/postgresql/data
USER 10001
EXPOSE 5432 8008
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8008/liveness || exit 1
CMD ["patroni", "/etc/patroni/patroni.yml"]
