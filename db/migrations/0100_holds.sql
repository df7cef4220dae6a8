-- depends: 0005_jobs
-- Two-phase reservations (holds). A hold reserves part of an account's
-- balance: while active it counts in credits.accounts.held, so the guard
-- every debit already uses (balance - held >= amount) sees it at once.
-- A hold resolves at most once: active -> captured | voided | expired.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SET ROLE shieldx_owner;

CREATE TABLE credits.holds (
  hold_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id   text   NOT NULL,
  account_id  bigint NOT NULL REFERENCES credits.accounts,
  amount      bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000000),
  status      text   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'captured', 'voided', 'expired')),
  -- What a capture took (the rest went back to available); NULL unless captured.
  captured    bigint,
  reason      text   CHECK (length(reason) <= 500),
  idem_key    text   NOT NULL,
  -- The deadline is enforced where the hold is used (commit/abort compare it
  -- with now()); the expiry job only returns the funds of holds past it.
  expires_at  timestamptz NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz,
  -- Set when the hold is a leg of a distributed transaction (FK in 0101).
  dist_tx_id  bigint,
  CONSTRAINT holds_idem_unique UNIQUE (tenant_id, idem_key),
  CONSTRAINT holds_resolved_iff_final CHECK ((status = 'active') = (resolved_at IS NULL)),
  CONSTRAINT holds_captured_within_amount CHECK (
    (status = 'captured' AND captured BETWEEN 1 AND amount) OR (status <> 'captured' AND captured IS NULL))
);
-- The expiry job's work list, and lazy release per account.
CREATE INDEX holds_active_by_expiry ON credits.holds (expires_at) WHERE status = 'active';
CREATE INDEX holds_active_by_account ON credits.holds (account_id, expires_at) WHERE status = 'active';

-- New journal kinds: a hold's capture (leg 2, keyed by the hold's key) and the
-- credit leg of a distributed transaction (leg 3).
-- The new CHECK admits every kind the old one did: validating it in the same
-- transaction cannot fail on existing rows.
-- squawk-ignore ban-drop-constraint
ALTER TABLE credits.entries DROP CONSTRAINT entries_kind_check;
-- squawk-ignore constraint-missing-not-valid
ALTER TABLE credits.entries ADD CONSTRAINT entries_kind_check
  CHECK (kind IN ('grant', 'consume', 'transfer_out', 'transfer_in', 'capture', 'dist_credit'));

RESET ROLE;
