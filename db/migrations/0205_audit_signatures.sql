-- depends: 0204_checkpoint_prunes
-- Evidence a database superuser cannot forge (db/functions/audit/signing.sql):
-- checkpoints and retention anchors are signed with Ed25519 by a signer
-- outside PostgreSQL (`shieldx audit sign`), whose private key the server's
-- OS user cannot read. The database keeps the public halves (a convenience:
-- verifiers pin the key outside it) and the signatures, append-only.
-- Subject master key epochs (db/functions/privacy/epochs.sql): an erasure is
-- final once the epoch it happened in is closed (its master key destroyed).
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
