"""Settings, read once from environment variables."""

from __future__ import annotations

import math
import os

import msgspec

DEFAULT_DATABASE_URL = "postgresql://shieldx_app@127.0.0.1:55432/shieldx"


def local_url(user: str, dbname: str = "shieldx", env: dict[str, str] | None = None) -> str:
    """A URL of the local cluster (deploy/local/cluster.sh): port SHIELDX_PGPORT, default 55432."""
    port = int((os.environ if env is None else env).get("SHIELDX_PGPORT", "55432"))
    return f"postgresql://{user}@127.0.0.1:{port}/{dbname}"


def timeout_ms(seconds: float) -> int:
    """A statement_timeout in ms from seconds: 0 (or less) is no limit, anything else at least 1 ms."""
    return 0 if seconds <= 0 else max(1, math.ceil(seconds * 1000))


class Settings(msgspec.Struct, frozen=True):
    # libpq conninfo or URL. With Patroni: HAProxy's write port (it follows the leader
    # by Patroni's /primary check). A multi-host URL without HAProxy is not offered:
    # target_session_attrs cannot tell a deposed primary (docs/operations/ha.md).
    database_url: str = DEFAULT_DATABASE_URL
    pool_min: int = 4
    pool_max: int = 16
    # Seconds a request waits for a pooled connection before 503.
    pool_timeout: float = 5.0
    # Per-statement timeout (ms) set on every pooled connection.
    statement_timeout_ms: int = 5000
    max_body_bytes: int = 1_048_576
    # API keys and rate limits (see shieldx/auth.py). Off only for benchmarks'
    # baseline: every request is then served as the platform operator.
    auth: bool = True
    # Seconds a verified key is trusted from the in-process cache.
    auth_cache_s: float = 5.0
    # 401/403 answers per client network (/24, /48): a token bucket of this rate (per second) and burst.
    auth_failure_rate: float = 1.0
    auth_failure_burst: float = 20.0
    # Circuit breaker: consecutive outage failures that open it, and seconds it stays open.
    breaker_threshold: int = 3
    breaker_open_s: float = 2.0
    # The audit signer's Ed25519 public key (64 hex digits), pinned outside the
    # database: POST /v1/audit/checkpoints/verify checks exports against it.
    # Empty: the key registered in the database (which a superuser can add to).
    audit_pubkey: str = ""
    # Seconds the audit verification routes (GET /v1/audit/verify, POST
    # /v1/audit/checkpoints/verify) may run: their statement_timeout, set for
    # their own transaction instead of statement_timeout_ms. A full verify reads
    # the whole log, about 100,000 entries a second with the journal's content
    # (bench/README.md#audit): 180 s covers some 10 million entries with room to
    # spare. 0: no limit.
    audit_verify_timeout_s: float = 180.0

    @property
    def audit_verify_timeout_ms(self) -> int:
        """statement_timeout in ms: 0 stays 0 (no limit), anything else at least 1 ms."""
        return timeout_ms(self.audit_verify_timeout_s)

    # Observability (shieldx/observability): Prometheus metrics, the JSON line per request,
    # the request id handed to PostgreSQL (application_name), and the log level.
    metrics: bool = True
    request_log: bool = True
    sql_request_id: bool = True
    log_level: str = "INFO"
    # Where problem `type` URIs point (<url>#<name>): by default the API's own /docs/errors page.
    errors_url: str = "/docs/errors"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        names = {
            "database_url": "DATABASE_URL",
            "pool_min": "SHIELDX_POOL_MIN",
            "pool_max": "SHIELDX_POOL_MAX",
            "pool_timeout": "SHIELDX_POOL_TIMEOUT",
            "statement_timeout_ms": "SHIELDX_STATEMENT_TIMEOUT_MS",
            "max_body_bytes": "SHIELDX_MAX_BODY_BYTES",
            "auth": "SHIELDX_AUTH",
            "auth_cache_s": "SHIELDX_AUTH_CACHE_S",
            "auth_failure_rate": "SHIELDX_AUTH_FAILURE_RATE",
            "auth_failure_burst": "SHIELDX_AUTH_FAILURE_BURST",
            "breaker_threshold": "SHIELDX_BREAKER_THRESHOLD",
            "breaker_open_s": "SHIELDX_BREAKER_OPEN_S",
            "audit_pubkey": "SHIELDX_AUDIT_PUBKEY",
            "audit_verify_timeout_s": "SHIELDX_AUDIT_VERIFY_TIMEOUT",
            "metrics": "SHIELDX_METRICS",
            "request_log": "SHIELDX_REQUEST_LOG",
            "sql_request_id": "SHIELDX_SQL_REQUEST_ID",
            "log_level": "SHIELDX_LOG_LEVEL",
            "errors_url": "SHIELDX_ERRORS_URL",
        }
        raw = {field: env[var] for field, var in names.items() if var in env}
        raw.setdefault("database_url", local_url("shieldx_app", env=env))
        # msgspec converts and type-checks the strings ("16" -> 16).
        return msgspec.convert(raw, cls, strict=False)
