"""Grafana dashboards as code: writes credits.json, shadow.json and database.json beside this file.

    .venv/bin/pip install grafana-foundation-sdk && .venv/bin/python deploy/monitoring/dashboards/generate.py

Built with Grafana's own grafana-foundation-sdk. Every panel queries the Prometheus data source picked in
the dashboard's `datasource` variable, with the metric names of api/shieldx/metrics.py,
deploy/monitoring/exporter/queries.yaml and Patroni, and the recording rules of
deploy/monitoring/prometheus/rules/. deploy/tests/test_monitoring_dashboards.py checks that every query
parses (and that these files are what this script writes).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class Q:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str = ""


def _targets(queries: list[Q]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(chr(ord("A") + i))
        for i, q in enumerate(queries)
    ]


def graph(title: str, unit: str, *queries: Q, description: str = "", width: int = 12) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width).height(8)
    if description:
        panel = panel.description(description)
    return panel.targets(_targets(list(queries)))


def single(title: str, unit: str, query: Q, description: str = "", width: int = 6) -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width).height(4)
    if description:
        panel = panel.description(description)
    return panel.targets(_targets([query]))


def board(uid: str, title: str, tags: list[str], rows: list[tuple[str, list]]) -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["shieldx", *tags])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for row_title, panels in rows:
        d = d.with_row(dashboard.Row(row_title))
        for panel in panels:
            d = d.with_panel(panel)
    return d


CONSUME = 'route=~".*/consume"'


def credits() -> dashboard.Dashboard:
    quantile = (
        "histogram_quantile({q}, sum by (le) (rate(shieldx_http_request_duration_seconds_bucket{{"
        + CONSUME
        + "}}[5m])))"
    )
    return board(
        "shieldx-credits",
        "ShieldX · Credits",
        ["credits"],
        [
            (
                "Throughput",
                [
                    graph(
                        "Requests per second by route",
                        "reqps",
                        Q("sum by (route) (rate(shieldx_http_requests_total[5m]))", "{{route}}"),
                    ),
                    graph(
                        "Answers per second by status",
                        "reqps",
                        Q("sum by (status) (rate(shieldx_http_requests_total[5m]))", "{{status}}"),
                    ),
                    single(
                        "Consumes per second", "reqps", Q(f"sum(rate(shieldx_http_requests_total{{{CONSUME}}}[5m]))")
                    ),
                    single("Requests in flight", "short", Q("sum(shieldx_http_requests_in_flight)")),
                    single("5xx ratio (5m)", "percentunit", Q("sum(shieldx:http_5xx_ratio:rate5m)")),
                    single("Circuit breaker open", "bool_on_off", Q("max(shieldx_breaker_open)")),
                ],
            ),
            (
                "Latency",
                [
                    graph(
                        "Consume latency percentiles",
                        "s",
                        Q(quantile.format(q=0.5), "p50"),
                        Q(quantile.format(q=0.95), "p95"),
                        Q(quantile.format(q=0.99), "p99"),
                        Q(quantile.format(q=0.999), "p99.9"),
                    ),
                    graph(
                        "p99 latency by route",
                        "s",
                        Q(
                            "histogram_quantile(0.99, sum by (le, route) "
                            "(rate(shieldx_http_request_duration_seconds_bucket[5m])))",
                            "{{route}}",
                        ),
                    ),
                    graph(
                        "Consumes over 50 ms (SLO: at most 0.1 %)",
                        "percentunit",
                        Q("shieldx:consume_slow_ratio:rate5m", "5m"),
                        Q("shieldx:consume_slow_ratio:rate1h", "1h"),
                        Q("shieldx:consume_slow_ratio:rate1d", "1d"),
                        description="Share of consumes slower than 50 ms per window; the burn-rate alerts compare "
                        "these with 0.1 % times 14.4, 6, 3 and 1.",
                    ),
                    graph(
                        "Database pool",
                        "short",
                        Q("sum(shieldx_db_pool_size)", "size"),
                        Q("sum(shieldx_db_pool_idle)", "idle"),
                        Q("sum(shieldx_db_pool_waiting)", "waiting"),
                    ),
                ],
            ),
            (
                "Refusals",
                [
                    graph(
                        "Refusals by error code",
                        "reqps",
                        Q("sum by (sqlstate, name) (rate(shieldx_refusals_total[5m]))", "{{sqlstate}} {{name}}"),
                    ),
                    graph(
                        "Rate limited, auth failures, idempotent replays",
                        "reqps",
                        Q("sum(rate(shieldx_rate_limited_total[5m]))", "429 rate limited"),
                        Q("sum by (reason) (rate(shieldx_auth_failures_total[5m]))", "auth: {{reason}}"),
                        Q("sum by (route) (rate(shieldx_idempotent_replays_total[5m]))", "replay {{route}}"),
                    ),
                ],
            ),
            (
                "Holds and transactions",
                [
                    graph(
                        "Holds",
                        "short",
                        Q("sum(shieldx_holds_active)", "active"),
                        Q("sum(shieldx_holds_expired_unreleased)", "expired, not released"),
                    ),
                    graph(
                        "Oldest overdue",
                        "s",
                        Q("max(shieldx_holds_oldest_overdue_seconds)", "hold"),
                        Q("max(shieldx_dist_oldest_undecided_age_seconds)", "undecided distributed tx"),
                        Q("max(shieldx_prepared_oldest_age_seconds)", "prepared tx"),
                    ),
                    graph(
                        "Distributed and prepared transactions",
                        "short",
                        Q("sum(shieldx_dist_undecided)", "distributed undecided"),
                        Q("sum(shieldx_dist_overdue)", "distributed overdue"),
                        Q("sum(shieldx_prepared_xacts)", "prepared"),
                        Q("sum(shieldx_prepared_overdue)", "prepared overdue"),
                    ),
                    single("Reconcile mismatches", "short", Q("max(shieldx_reconcile_mismatches)")),
                ],
            ),
        ],
    )


def shadow() -> dashboard.Dashboard:
    return board(
        "shieldx-shadow",
        "ShieldX · Shadow evaluation",
        ["shadow"],
        [
            (
                "Experiments",
                [
                    graph(
                        "Experiments by state",
                        "short",
                        Q("sum by (state) (shieldx_shadow_experiments)", "{{state}}"),
                    ),
                    graph(
                        "Automatic rollbacks",
                        "short",
                        Q("sum(increase(shieldx_shadow_rollbacks_total[1h]))", "rollbacks per hour"),
                    ),
                    single("Running experiments", "short", Q('sum(shieldx_shadow_experiments{state="running"})')),
                    single("Rollbacks (total)", "short", Q("max(shieldx_shadow_rollbacks_total)")),
                    single(
                        "Evaluator last success",
                        "s",
                        Q('max(shieldx_job_last_success_age_seconds{cron_job="shieldx-shadow-evaluate"})'),
                        description="Seconds since the shadow evaluation job (every minute) last succeeded.",
                    ),
                ],
            )
        ],
    )


def database() -> dashboard.Dashboard:
    return board(
        "shieldx-database",
        "ShieldX · Database and HA",
        ["database", "ha"],
        [
            (
                "Replication and Patroni",
                [
                    graph(
                        "Standbys",
                        "short",
                        Q("max(shieldx_replication_standbys)", "streaming"),
                        Q("max(shieldx_replication_sync_standbys)", "synchronous"),
                    ),
                    graph("Replay lag", "s", Q("max(shieldx_replication_max_replay_lag_seconds)", "slowest standby")),
                    graph(
                        "Patroni members",
                        "short",
                        Q('up{job="patroni"}', "{{node}} up"),
                        Q("patroni_primary", "{{node}} primary"),
                        Q("patroni_postgres_running", "{{node}} postgres running"),
                    ),
                    graph("Timeline", "short", Q("shieldx:patroni_timeline:max", "{{scope}}")),
                ],
            ),
            (
                "pg_cron jobs",
                [
                    graph(
                        "Seconds since last success",
                        "s",
                        Q("shieldx_job_last_success_age_seconds", "{{cron_job}}"),
                    ),
                    graph(
                        "Failures in the last hour",
                        "short",
                        Q("shieldx_job_failures_last_hour", "{{cron_job}}"),
                    ),
                    graph(
                        "Last success, in intervals",
                        "short",
                        Q(
                            "shieldx_job_last_success_age_seconds / shieldx_job_expected_interval_seconds",
                            "{{cron_job}}",
                        ),
                        description="ShieldxCronJobSilent fires above 2.",
                    ),
                    single("Jobs whose last run failed", "short", Q("sum(shieldx_job_last_run_failed)")),
                ],
            ),
            (
                "Audit and backups",
                [
                    single("Last audit verify passed", "bool_yes_no", Q("min(shieldx_audit_last_verify_ok)")),
                    single("Last audit verify", "s", Q("max(shieldx_audit_last_verify_age_seconds)")),
                    single("Last audit checkpoint", "s", Q("max(shieldx_audit_last_checkpoint_age_seconds)")),
                    single("Last good backup", "s", Q("max(shieldx_backup_last_success_age_seconds)")),
                    graph(
                        "Ages",
                        "s",
                        Q("max(shieldx_audit_last_checkpoint_age_seconds)", "audit checkpoint"),
                        Q("max(shieldx_audit_last_verify_age_seconds)", "audit verify"),
                        Q("max(shieldx_backup_last_success_age_seconds)", "backup"),
                        Q("max(shieldx_reconcile_last_run_age_seconds)", "reconcile"),
                    ),
                    graph(
                        "Exporter",
                        "short",
                        Q("pg_up", "database reachable"),
                        Q("pg_exporter_last_scrape_error", "query errors"),
                        Q("pg_exporter_last_scrape_duration_seconds", "scrape seconds"),
                    ),
                ],
            ),
        ],
    )


DASHBOARDS = {"credits.json": credits, "shadow.json": shadow, "database.json": database}


def render(build) -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        text = render(build)
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run deploy/monitoring/dashboards/generate.py):", *stale)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
