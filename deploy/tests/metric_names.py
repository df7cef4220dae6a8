"""The metric names agreed between the API (api/shieldx/observability/metrics.py), the exporter
(deploy/monitoring/exporter/queries.yaml), the rules and the dashboards: what the monitoring tests check."""

API_METRICS = frozenset(
    {
        "shieldx_http_requests_total",
        "shieldx_http_request_duration_seconds_bucket",
        "shieldx_http_request_duration_seconds_count",
        "shieldx_http_request_duration_seconds_sum",
        "shieldx_http_requests_in_flight",
        "shieldx_db_pool_size",
        "shieldx_db_pool_idle",
        "shieldx_db_pool_waiting",
        "shieldx_breaker_open",
        "shieldx_breaker_transitions_total",
        "shieldx_auth_failures_total",
        "shieldx_rate_limited_total",
        "shieldx_idempotent_replays_total",
        "shieldx_refusals_total",
    }
)

# The database metrics, every one exported by postgres_exporter from the queries file.
DATABASE_METRICS = (
    "shieldx_job_last_run_failed",
    "shieldx_job_last_success_age_seconds",
    "shieldx_job_failures_last_hour",
    "shieldx_job_expected_interval_seconds",
    "shieldx_audit_last_verify_ok",
    "shieldx_audit_last_verify_age_seconds",
    "shieldx_audit_last_checkpoint_age_seconds",
    "shieldx_holds_active",
    "shieldx_holds_expired_unreleased",
    "shieldx_holds_oldest_overdue_seconds",
    "shieldx_dist_undecided",
    "shieldx_dist_overdue",
    "shieldx_dist_oldest_undecided_age_seconds",
    "shieldx_prepared_xacts",
    "shieldx_prepared_overdue",
    "shieldx_prepared_oldest_age_seconds",
    "shieldx_reconcile_mismatches",
    "shieldx_reconcile_last_run_age_seconds",
    "shieldx_shadow_experiments",
    "shieldx_shadow_rollbacks_total",
    "shieldx_replication_sync_standbys",
    "shieldx_replication_standbys",
    "shieldx_replication_max_replay_lag_seconds",
    "shieldx_backup_last_success_age_seconds",
    "shieldx_backup_last_success_timestamp_seconds",
)
