-- depends: 0206_table_comments 0511_drop_verify_streams_v1 0620_payment_card_hmac
-- Evidence a database superuser cannot forge (db/functions/audit/signing.sql):
-- checkpoints and retention anchors are signed with Ed25519 by a signer
-- outside PostgreSQL (`shieldx audit sign`), whose private key the server's
-- OS user cannot read. The database keeps the public halves (a convenience:
-- verifiers pin the key outside it) and the signatures, append-only.
-- Subject master key epochs (db/functions/privacy/epochs.sql): an erasure is
-- final once the epoch it happened in is closed (its master key destroyed).
-- The functions whose signature or result changed with the signer are
-- dropped here (a function file never drops a public function), since their
-- old overloads would make calls with the default arguments ambiguous; the
-- function files re-create them in the post-apply step of the same migrate.
-- The new arguments have defaults, so an old API process's calls resolve to
-- the new functions; only between this migration and the function reload
-- (seconds) is audit verification unavailable.
-- squawk-ignore-file ban-drop-function
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
DROP FUNCTION IF EXISTS audit.verify(boolean, boolean);                        -- now with p_journal
DROP FUNCTION IF EXISTS audit.verify_streams(boolean, boolean, text, text);    -- now with p_journal
DROP FUNCTION IF EXISTS audit.verify_export(jsonb);                            -- now with the pinned key
-- cleanup_old_transactions(int, int) answers other columns since the signer
-- plans the anchors; the same signature, so only the old version is dropped.
DO $$
DECLARE
  v_old regprocedure := to_regprocedure('audit.cleanup_old_transactions(int, int)');
BEGIN
  IF v_old IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = v_old
                                                              AND 'anchors_planned' = ANY (p.proargnames)) THEN
    DROP FUNCTION audit.cleanup_old_transactions(int, int);
  END IF;
END
$$;
-- A session setting opened the append-only tables; removal now needs a signed
-- anchor (ops._make_removable).
DROP FUNCTION IF EXISTS ops._allow_removal(boolean);

SET ROLE shieldx_owner;

CREATE TABLE audit.signing_keys (
  key_id        text PRIMARY KEY,            -- 'ed25519:' || first 16 hex digits of SHA-256(public key)
  public_key    bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
  registered_at timestamptz NOT NULL DEFAULT now()
);

-- One signature per checkpoint, over its statement (audit._checkpoint_statement):
-- the checkpoint's fields and the hash of the previous checkpoint's signed
-- statement, so signed checkpoints (and exports of them) form a chain.
CREATE TABLE audit.checkpoint_signatures (
  checkpoint_id bigint PRIMARY KEY REFERENCES audit.checkpoints,
  key_id        text   NOT NULL REFERENCES audit.signing_keys,
  prev_signed   bytea  NOT NULL CHECK (octet_length(prev_signed) = 32),
  sig           bytea  NOT NULL CHECK (octet_length(sig) = 64),
  signed_at     timestamptz NOT NULL DEFAULT now()
);

-- One signature per retention anchor: the signer's consent that the chain may
-- start there. Deleting audit or journal entries needs one (the triggers check).
CREATE TABLE audit.anchor_signatures (
  stream    text COLLATE "C" NOT NULL,
  seq       bigint NOT NULL,
  key_id    text   NOT NULL REFERENCES audit.signing_keys,
  sig       bytea  NOT NULL CHECK (octet_length(sig) = 64),
  signed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (stream, seq),
  FOREIGN KEY (stream, seq) REFERENCES audit.anchors
);

-- Epochs of the subject master key. Every subject key is wrapped by the
-- current epoch's master key; closing an epoch re-wraps them under a new one
-- and destroys the old key file.
CREATE TABLE privacy.epochs (
  epoch_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key_id       text NOT NULL,               -- the master key of this epoch
  started_at   timestamptz NOT NULL DEFAULT now(),
  closed_key   text,                        -- the previous epoch's master key, destroyed when this one began
  rewrapped    bigint NOT NULL DEFAULT 0    -- subject keys moved from the previous epoch
);

RESET ROLE;

COMMENT ON TABLE audit.signing_keys IS
  'The audit signer''s Ed25519 public keys (audit.register_signing_key), by key id: what checkpoint and anchor '
  'signatures are checked against when no key is pinned outside the database.';
COMMENT ON TABLE audit.checkpoint_signatures IS
  'Append-only: the audit signer''s Ed25519 signature of each checkpoint''s statement, chained by the hash of the '
  'previous signed statement (prev_signed).';
COMMENT ON TABLE audit.anchor_signatures IS
  'The audit signer''s Ed25519 signature of each retention anchor: its consent that a chain may start there; '
  'removing audit or journal entries needs one.';
COMMENT ON TABLE privacy.epochs IS
  'Epochs of the subject master key: the key of each epoch, when it began, the previous epoch''s key destroyed '
  'then, and how many subject keys were re-wrapped.';
