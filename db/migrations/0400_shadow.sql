-- depends: 0005_jobs
-- Shadow evaluation: rules and their immutable versions, champion/challenger
-- experiments with a canary plan and guardrails, raw observations, the
-- folded per-arm counts the Beta posteriors come from, and the append-only
-- deployment audit trail. Functions live in db/functions/shadow/.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA shadow AUTHORIZATION shieldx_owner;
SET ROLE shieldx_owner;

CREATE TABLE shadow.rules (
  rule_id    text PRIMARY KEY CHECK (rule_id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A version is immutable once written (triggers in immutability.sql).
CREATE TABLE shadow.rule_versions (
  rule_id    text NOT NULL REFERENCES shadow.rules,
  version    int  NOT NULL CHECK (version > 0),
  definition jsonb NOT NULL,
  idem_key   text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (rule_id, version),
  CONSTRAINT rule_versions_idem_unique UNIQUE (rule_id, idem_key)
);

CREATE TABLE shadow.experiments (
  experiment_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name               text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
  rule_id            text NOT NULL,
  champion_version   int  NOT NULL,
  challenger_version int  NOT NULL,
  metric             text NOT NULL CHECK (length(metric) BETWEEN 1 AND 100),
  -- Canary plan: challenger traffic (%) per step, strictly increasing, in (0, 100].
  steps              numeric[] NOT NULL CHECK (cardinality(steps) BETWEEN 1 AND 20),
  min_obs_per_step   bigint   NOT NULL CHECK (min_obs_per_step >= 1),
  min_step_duration  interval NOT NULL CHECK (min_step_duration >= interval '0'),
  -- Guardrails (NULL = that check is off). Error rates are fractions.
  max_error_rate          double precision CHECK (max_error_rate BETWEEN 0 AND 1),
  max_error_rate_increase double precision CHECK (max_error_rate_increase BETWEEN 0 AND 1),
  max_p95_ms              double precision CHECK (max_p95_ms > 0),
  max_p95_ratio           double precision CHECK (max_p95_ratio > 0),
  guardrail_min_obs  int  NOT NULL CHECK (guardrail_min_obs >= 1),
  breach_limit       int  NOT NULL CHECK (breach_limit >= 1),
  breach_mode        text NOT NULL CHECK (breach_mode IN ('consecutive', 'cumulative')),
  -- Where the canary stands.
  state              text NOT NULL CHECK (state IN ('running', 'paused', 'promoted', 'rolled_back', 'inconclusive')),
  step_no            int  NOT NULL CHECK (step_no >= 1),
  weight             numeric NOT NULL CHECK (weight BETWEEN 0 AND 100),
  step_started_at    timestamptz NOT NULL DEFAULT now(),
  breaches           int  NOT NULL DEFAULT 0 CHECK (breaches >= 0),   -- counted per breach_mode
  breaches_total     int  NOT NULL DEFAULT 0 CHECK (breaches_total >= 0),
  created_by         text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
  idem_key           text NOT NULL UNIQUE,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT experiments_versions_differ CHECK (champion_version <> challenger_version),
  CONSTRAINT experiments_step_in_plan CHECK (step_no <= cardinality(steps)),
  CONSTRAINT experiments_champion_fk FOREIGN KEY (rule_id, champion_version) REFERENCES shadow.rule_versions,
  CONSTRAINT experiments_challenger_fk FOREIGN KEY (rule_id, challenger_version) REFERENCES shadow.rule_versions
);

-- One ingested batch per (experiment, idempotency key): a replay is answered from here.
CREATE TABLE shadow.batches (
  batch_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  experiment_id bigint NOT NULL REFERENCES shadow.experiments,
  idem_key      text   NOT NULL,
  fingerprint   text   NOT NULL,   -- md5 of the batch's content
  n             int    NOT NULL CHECK (n >= 1),
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT batches_idem_unique UNIQUE (experiment_id, idem_key),
  CONSTRAINT batches_experiment_unique UNIQUE (batch_id, experiment_id)  -- target of observations' key
);

-- Raw observations. ins_xid is the inserting transaction (xid8, never wraps):
-- the fold job takes every row whose transaction finished below its horizon
-- exactly once, whatever order ids were drawn or transactions committed in.
-- One foreign key, to the row's own batch (inserted by the same transaction),
-- which names the experiment: a per-row key to shadow.experiments would
-- KEY SHARE-lock that one hot row from every concurrent batch (multixacts).
CREATE TABLE shadow.observations (
  obs_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  experiment_id bigint NOT NULL,
  batch_id      bigint NOT NULL,
  arm           text   NOT NULL CHECK (arm IN ('champion', 'challenger')),
  step_no       int    NOT NULL CHECK (step_no >= 1),   -- the canary step when it arrived
  success       boolean NOT NULL,
  error         boolean NOT NULL,
  latency_ms    double precision NOT NULL CHECK (latency_ms >= 0 AND latency_ms < 'Infinity'),
  unit_id       text CHECK (length(unit_id) <= 200),
  ins_xid       xid8   NOT NULL DEFAULT pg_current_xact_id(),
  received_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT observations_batch_fk FOREIGN KEY (batch_id, experiment_id)
    REFERENCES shadow.batches (batch_id, experiment_id)
);
CREATE INDEX observations_ins_xid ON shadow.observations (ins_xid);

-- The fold's watermark: every observation with ins_xid < horizon is folded.
CREATE TABLE shadow.fold_state (
  id        boolean PRIMARY KEY DEFAULT true CHECK (id),
  horizon   xid8 NOT NULL DEFAULT '0',
  runs      bigint NOT NULL DEFAULT 0,
  folded    bigint NOT NULL DEFAULT 0,
  folded_at timestamptz
);
INSERT INTO shadow.fold_state DEFAULT VALUES;

-- Folded counts per experiment, canary step and arm (posteriors sum the steps).
CREATE TABLE shadow.arm_stats (
  experiment_id bigint NOT NULL REFERENCES shadow.experiments,
  step_no       int    NOT NULL,
  arm           text   NOT NULL CHECK (arm IN ('champion', 'challenger')),
  n             bigint NOT NULL CHECK (n >= 0),
  successes     bigint NOT NULL CHECK (successes BETWEEN 0 AND n),
  errors        bigint NOT NULL CHECK (errors BETWEEN 0 AND n),
  PRIMARY KEY (experiment_id, step_no, arm)
);

-- Folded latency histogram (log buckets, 2% wide) for p95 guardrails.
CREATE TABLE shadow.latency_hist (
  experiment_id bigint NOT NULL REFERENCES shadow.experiments,
  step_no       int    NOT NULL,
  arm           text   NOT NULL CHECK (arm IN ('champion', 'challenger')),
  bucket        int    NOT NULL CHECK (bucket >= 0),
  n             bigint NOT NULL CHECK (n > 0),
  PRIMARY KEY (experiment_id, step_no, arm, bucket)
);

-- The job's latest evaluation of each experiment (posteriors, decision, guardrails).
CREATE TABLE shadow.evaluations (
  experiment_id bigint PRIMARY KEY REFERENCES shadow.experiments,
  posterior     jsonb NOT NULL,
  guardrails    jsonb NOT NULL,
  computed_at   timestamptz NOT NULL DEFAULT now()
);

-- The deployment audit trail: one row per transition, append-only
-- (immutability.sql); the audit log hash-chains it by this name.
CREATE TABLE shadow.deployment_events (
  event_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  experiment_id bigint NOT NULL REFERENCES shadow.experiments,
  kind          text   NOT NULL CHECK (kind IN ('created', 'step_advanced', 'paused', 'resumed', 'promoted',
                                                 'rolled_back', 'inconclusive')),
  from_state    text,
  to_state      text   NOT NULL,
  from_weight   numeric,
  to_weight     numeric NOT NULL,
  step_no       int    NOT NULL,
  actor         text   NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
  reason        text   NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
  evidence      jsonb  NOT NULL,
  idem_key      text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT deployment_events_idem_unique UNIQUE (experiment_id, idem_key)
);
CREATE INDEX deployment_events_experiment ON shadow.deployment_events (experiment_id, event_id);

RESET ROLE;
