# Two commands for a newcomer: `make run` and `make test`. Everything else
# (Debian packages, the virtualenv, the local PostgreSQL cluster) is installed
# on demand, idempotently; a second run only checks.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := postgresql-15 postgresql-15-cron postgresql-plpython3-15 python3-scipy python3-cryptography wrk etcd-server patroni python3-etcd haproxy pgbackrest prometheus prometheus-alertmanager prometheus-postgres-exporter
PYTEST_ARGS ?=

.PHONY: help deps venv db run stop test bench clean lint lint-py lint-sql observe

help:
	@echo "make run    start PostgreSQL, migrate, serve the API on http://127.0.0.1:8000"
	@echo "make test   run the whole test suite on a real PostgreSQL 15"
	@echo "make stop   stop the API and the local cluster"
	@echo "make bench  measure and write bench/results.json"
	@echo "make lint   ruff, mypy, sqlfluff and squawk"

deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV) || { \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(VENV); }
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,lint]'
	@touch $@

venv: $(BIN)/.installed

db: deps venv
	@./deploy/local/cluster.sh start
	@$(BIN)/shieldx db migrate

run: db
	@echo "API on http://127.0.0.1:8000  (docs: /docs)  - stop with Ctrl-C or 'make stop'"
	@$(BIN)/shieldx serve --host 127.0.0.1 --port 8000 --pidfile .local/run/api.pid

stop:
	@if [ -x $(BIN)/python ]; then PYTHONPATH=deploy/local $(BIN)/python -m shieldx_local observe down >/dev/null || true; fi
	@if [ -s .local/run/api.pid ]; then kill $$(cat .local/run/api.pid) 2>/dev/null || true; rm -f .local/run/api.pid; fi
	@if [ -x deploy/local/cluster.sh ]; then ./deploy/local/cluster.sh stop; fi
	@echo stopped

lint: lint-py lint-sql

lint-py: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# SQL lint: config in .sqlfluff, db/*/.sqlfluff and .squawk.toml.
lint-sql: venv
	$(BIN)/sqlfluff lint db/ deploy/tests/upgrade_migrations deploy/tests/upgrade_functions --processes 2
	$(BIN)/squawk --config .squawk.toml db/migrations/*.sql deploy/tests/upgrade_migrations/*.sql

test: db
	$(BIN)/pytest $(PYTEST_ARGS)

bench: db
	PYTHONPATH=deploy/local:bench $(BIN)/python -m shieldx_bench

# Prometheus :9090, Alertmanager :9093, postgres_exporter :9187 on loopback (deploy/monitoring).
observe: venv
	@PYTHONPATH=deploy/local $(BIN)/python -m shieldx_local observe up

clean: stop
	rm -rf "$$(./deploy/local/cluster.sh state-dir)" .local $(VENV)

# --- High availability (see README "High availability and deployment") -------
TOOLS_VENV := .local/tools-venv
.PHONY: ha-up ha-down ha-status k8s-tools k8s-check

ha-up: deps venv
	@PYTHONPATH=deploy/local:bench $(BIN)/python -m shieldx_local ha up

ha-down: venv
	@PYTHONPATH=deploy/local:bench $(BIN)/python -m shieldx_local ha down

ha-status: venv
	@PYTHONPATH=deploy/local:bench $(BIN)/python -m shieldx_local ha status

# checkov and kubernetes-validate in their own virtualenv (checkov's pins clash with the project's).
$(TOOLS_VENV)/bin/checkov:
	@test -x $(TOOLS_VENV)/bin/python || python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q --disable-pip-version-check checkov==3.3.30 kubernetes-validate==1.37.0

k8s-tools: $(TOOLS_VENV)/bin/checkov

k8s-check: k8s-tools
	$(TOOLS_VENV)/bin/kubernetes-validate --strict -k 1.30.0 --quiet deploy/k8s/[0-9]*.yaml
	$(TOOLS_VENV)/bin/checkov -d deploy/k8s --config-file deploy/k8s/.checkov.yaml --compact --quiet

