-- depends: 0100_holds
-- Distributed transactions: a durable coordinator record, its participants
-- (legs) with their votes and outcomes, and an append-only event log; plus
-- the log of the reaper of PostgreSQL's own orphaned prepared transactions.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SET ROLE shieldx_owner;

CREATE TABLE credits.dist_transactions (
  dist_tx_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- The transaction id: chosen by our caller (internal) or by an external coordinator.
  xid          text NOT NULL CHECK (length(xid) BETWEEN 1 AND 200),
  coordinator  text NOT NULL CHECK (coordinator IN ('internal', 'external')),
  state        text NOT NULL DEFAULT 'active'
               CHECK (state IN ('active', 'prepared', 'committing', 'aborting', 'committed', 'aborted')),
  decision     text CHECK (decision IN ('commit', 'abort')),
  -- The legs as requested (normalised), so a replay of begin is recognised.
  legs         jsonb NOT NULL,
  -- No decision by then: presumed abort.
  deadline     timestamptz NOT NULL,
  reason       text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  decided_at   timestamptz,
  completed_at timestamptz,
  CONSTRAINT dist_tx_xid_unique UNIQUE (xid),
  CONSTRAINT dist_tx_decision_state CHECK (
    (decision IS NULL AND state IN ('active', 'prepared'))
    OR (decision = 'commit' AND state IN ('committing', 'committed'))
    OR (decision = 'abort' AND state IN ('aborting', 'aborted'))),
  CONSTRAINT dist_tx_decided_at CHECK ((decision IS NULL) = (decided_at IS NULL)),
  CONSTRAINT dist_tx_completed_at CHECK ((state IN ('committed', 'aborted')) = (completed_at IS NOT NULL))
);
-- Recovery's work list: everything not final.
CREATE INDEX dist_tx_open ON credits.dist_transactions (deadline) WHERE state NOT IN ('committed', 'aborted');

CREATE TABLE credits.dist_participants (
  dist_tx_id   bigint NOT NULL REFERENCES credits.dist_transactions,
  leg_no       int    NOT NULL CHECK (leg_no BETWEEN 1 AND 100),
  tenant_id    text   NOT NULL,
  account_id   bigint NOT NULL,
  -- < 0: a debit, prepared as a hold; > 0: a credit, applied at commit.
  amount       bigint NOT NULL CHECK (amount <> 0 AND abs(amount) <= 1000000000000000),
  hold_id      bigint REFERENCES credits.holds,
  vote         text CHECK (vote IN ('yes', 'no')),
  vote_reason  text,
  outcome      text CHECK (outcome IN ('committed', 'aborted')),
  entry_id     bigint,
  voted_at     timestamptz,
  completed_at timestamptz,
  PRIMARY KEY (dist_tx_id, leg_no),
  CONSTRAINT dist_participants_account_once UNIQUE (dist_tx_id, account_id),
  CONSTRAINT dist_participants_yes_debit_has_hold CHECK (vote IS DISTINCT FROM 'yes' OR amount > 0 OR hold_id IS NOT NULL),  -- noqa: LT05
  CONSTRAINT dist_participants_commit_needs_yes CHECK (outcome IS DISTINCT FROM 'committed' OR vote = 'yes')
);
-- Pending credits per account (closing such an account is refused).
CREATE INDEX dist_participants_pending_credit ON credits.dist_participants (account_id)
  WHERE amount > 0 AND outcome IS NULL;

-- Every state change of a distributed transaction, append-only.
CREATE TABLE credits.dist_events (
  event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  dist_tx_id bigint NOT NULL REFERENCES credits.dist_transactions,
  leg_no     int,
  event      text NOT NULL,
  detail     jsonb NOT NULL DEFAULT '{}',
  at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX dist_events_by_tx ON credits.dist_events (dist_tx_id, event_id);

-- No hold had a dist_tx_id before this migration (no distributed transaction
-- existed): the foreign key validates and the partial index builds over nothing.
-- squawk-ignore adding-foreign-key-constraint, constraint-missing-not-valid
ALTER TABLE credits.holds ADD CONSTRAINT holds_dist_tx_fk
  FOREIGN KEY (dist_tx_id) REFERENCES credits.dist_transactions;
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX holds_by_dist_tx ON credits.holds (dist_tx_id) WHERE dist_tx_id IS NOT NULL;

-- What the reaper of native prepared transactions (PREPARE TRANSACTION) saw and did.
CREATE TABLE credits.prepared_reaper_log (
  log_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  gid         text NOT NULL,
  database    text NOT NULL,
  owner       text NOT NULL,
  prepared_at timestamptz NOT NULL,
  age         interval NOT NULL,
  action      text NOT NULL CHECK (action IN ('overdue', 'rolled_back', 'gone', 'failed')),
  detail      text,
  at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX prepared_reaper_log_overdue_once ON credits.prepared_reaper_log (gid, prepared_at)
  WHERE action = 'overdue';

RESET ROLE;
