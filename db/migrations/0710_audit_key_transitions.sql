-- depends: 0700_audit_signatures
-- Rotation of the audit signer's Ed25519 key (db/functions/audit/signing.sql):
-- a key transition is a signed statement in the chain of signed checkpoints.
-- The key in force signs "from now on this key signs" (the new public key),
-- the new key countersigns it, and the next checkpoint's signature covers it
-- (prev_signed). Verifiers pinned to an older key follow the transitions;
-- a statement signed by a key no transition handed over to is refused.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

SET ROLE shieldx_owner;

CREATE TABLE audit.key_transitions (
  transition_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Its place in the chain: right after this signed checkpoint (0: before any).
  after_checkpoint  bigint NOT NULL CHECK (after_checkpoint >= 0),
  from_key_id       text   NOT NULL REFERENCES audit.signing_keys,
  to_key_id         text   NOT NULL REFERENCES audit.signing_keys,
  -- The old key revoked: its retention anchor signatures on checkpoints after
  -- this one are refused. NULL: retired, not revoked.
  compromised_since bigint CHECK (compromised_since BETWEEN 0 AND after_checkpoint),
  prev_signed       bytea  NOT NULL CHECK (octet_length(prev_signed) = 32),
  sig               bytea  NOT NULL CHECK (octet_length(sig) = 64),      -- by the old key (the key in force)
  new_sig           bytea  NOT NULL CHECK (octet_length(new_sig) = 64),  -- by the new key
  signed_at         timestamptz NOT NULL DEFAULT now(),
  CHECK (from_key_id <> to_key_id)
);

RESET ROLE;

COMMENT ON TABLE audit.key_transitions IS
  'Append-only: hand-overs of the audit signer''s Ed25519 key, each signed by the key in force and countersigned '
  'by the new one, chained with the signed checkpoints (prev_signed); compromised_since revokes the old key''s '
  'retention anchor signatures on later checkpoints.';
