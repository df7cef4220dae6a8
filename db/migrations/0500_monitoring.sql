-- depends: 0400_shadow
-- Monitoring: the facts postgres_exporter scrapes (db/functions/monitoring/),
-- the role it logs in as, and the records that feed the facts which must not
-- be recomputed per scrape (audit verify runs, reconcile runs, backups).
--
--   shieldx_monitor  what postgres_exporter logs in as: EXECUTE on the public
--                    functions of schema monitoring and nothing else; every
--                    session read-only, with short statement and lock timeouts.
--                    A member of pg_read_all_stats only, so pg_stat_replication
--                    shows it the standbys' sync state and replay lag.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shieldx_monitor') THEN
    CREATE ROLE shieldx_monitor LOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;  -- created concurrently by another database's migration
END
$$;
ALTER ROLE shieldx_monitor SET default_transaction_read_only = on;
ALTER ROLE shieldx_monitor SET statement_timeout = '5s';
ALTER ROLE shieldx_monitor SET lock_timeout = '100ms';
ALTER ROLE shieldx_monitor SET idle_in_transaction_session_timeout = '30s';
GRANT pg_read_all_stats TO shieldx_monitor;

CREATE SCHEMA monitoring AUTHORIZATION shieldx_owner;

SET ROLE shieldx_owner;

-- When a job entered the registry: a job that never succeeded counts its
-- silence from here (ops._register_job's upsert leaves it alone).
ALTER TABLE ops.jobs ADD COLUMN registered_at timestamptz NOT NULL DEFAULT now();

-- One row per audit verify run by the job shieldx-audit-verify (append-only;
-- the history purge removes rows older than 90 days).
CREATE TABLE ops.audit_verify_runs (
  run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz NOT NULL,
  incremental     boolean NOT NULL,
  since_checkpoint bigint,
  ok              boolean NOT NULL,
  entries_checked bigint NOT NULL CHECK (entries_checked >= 0),
  broken_streams  bigint NOT NULL CHECK (broken_streams >= 0),
  stream          text,             -- the first broken entry, if any
  seq             bigint,
  problem         text,
  CONSTRAINT audit_verify_runs_ok_iff_unbroken CHECK (ok = (broken_streams = 0)),
  CONSTRAINT audit_verify_runs_ordered CHECK (finished_at >= started_at)
);

-- One row per reconcile run by the job shieldx-reconcile: how many accounts
-- credits.reconcile() and credits.reconcile_holds() returned (append-only).
CREATE TABLE ops.reconcile_runs (
  run_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_at        timestamptz NOT NULL,
  finished_at       timestamptz NOT NULL,
  ledger_mismatches bigint NOT NULL CHECK (ledger_mismatches >= 0),
  hold_mismatches   bigint NOT NULL CHECK (hold_mismatches >= 0),
  CONSTRAINT reconcile_runs_ordered CHECK (finished_at >= started_at)
);

-- Every pgBackRest backup `shieldx backup run` attempted, and how it ended
-- (append-only). A success names pgBackRest's backup label.
CREATE TABLE ops.backups (
  backup_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stanza      text NOT NULL CHECK (length(stanza) BETWEEN 1 AND 100),
  kind        text NOT NULL CHECK (kind IN ('full', 'diff', 'incr')),
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  outcome     text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
  label       text CHECK (length(label) BETWEEN 1 AND 100),
  detail      text CHECK (length(detail) <= 4000),
  host        text,              -- the server that was backed up (inet_server_addr / node name)
  recorded_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT backups_ordered CHECK (finished_at >= started_at),
  CONSTRAINT backups_success_has_label CHECK (outcome <> 'succeeded' OR label IS NOT NULL),
  -- Recording the same attempt twice (a retried CLI) keeps one row.
  CONSTRAINT backups_attempt_once UNIQUE (stanza, kind, started_at)
);
CREATE UNIQUE INDEX backups_label_once ON ops.backups (stanza, label) WHERE label IS NOT NULL;
CREATE INDEX backups_last_success ON ops.backups (finished_at) WHERE outcome = 'succeeded';

RESET ROLE;

COMMENT ON TABLE ops.audit_verify_runs IS
  'One row per run of the job shieldx-audit-verify: when it ran and whether the audit trail verified '
  '(feeds monitoring.audit()). Append-only; shieldx-purge-history removes rows older than 90 days.';
COMMENT ON TABLE ops.reconcile_runs IS
  'One row per run of the job shieldx-reconcile: the number of accounts reconcile() and reconcile_holds() '
  'reported (feeds monitoring.reconcile(), so a scrape never recomputes it). Append-only.';
COMMENT ON TABLE ops.backups IS
  'One row per pgBackRest backup attempt recorded by shieldx backup run: stanza, type, start, end, outcome '
  'and label (feeds monitoring.backup()). Append-only; the same attempt recorded twice keeps one row.';
