-- depends: 0005_jobs
-- Tamper-evident audit log. Entries form many independent hash chains
-- ("streams"), so writers of different accounts never wait for each other:
--   ledger/<account_id>   one entry per credits.entries row; seq = the entry's
--                         per-account seq, ordered by the account row lock
--   <schema>.<table>/<n>  every other audited table, sharded over 16 chains
--                         whose head row (audit.heads) is locked until commit
-- Each entry stores the previous entry's hash and its own SHA-256 over a
-- canonical, versioned, length-prefixed serialization (audit._canon_v1).
-- Checkpoints sign (HMAC, key outside the database) a Merkle root over all
-- chain heads. Everything here is append-only (db/functions/audit/immutability.sql).
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA audit AUTHORIZATION shieldx_owner;
SET ROLE shieldx_owner;

CREATE TABLE audit.log (
  stream    text COLLATE "C" NOT NULL,
  seq       bigint   NOT NULL CHECK (seq > 0),
  ver       smallint NOT NULL DEFAULT 1,      -- serialization version of this entry
  source    text     NOT NULL,                -- audited table, or 'ddl'
  op        text     NOT NULL,                -- INSERT | UPDATE | DELETE | DDL
  actor     text     NOT NULL,                -- session_user: an API call and a DBA's psql alike
  app       text,                             -- application_name of the session
  txid      bigint   NOT NULL,
  logged_at timestamptz NOT NULL,
  payload   text     NOT NULL,                -- JSON text of the row, exactly as hashed
  prev_hash bytea    NOT NULL CHECK (octet_length(prev_hash) = 32),
  hash      bytea    NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (stream, seq)
) WITH (fillfactor = 100);

-- Head of every non-ledger chain. Locked (UPDATE) by the writer until commit,
-- so a chain's order is its commit order. A cache only: verify() trusts the log.
CREATE TABLE audit.heads (
  stream text COLLATE "C" PRIMARY KEY,
  seq    bigint NOT NULL,
  hash   bytea  NOT NULL
);

-- Signed checkpoints: a Merkle root over every chain head at that moment.
CREATE TABLE audit.checkpoints (
  checkpoint_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created_at    timestamptz NOT NULL DEFAULT now(),
  reason        text   NOT NULL CHECK (reason IN ('periodic', 'manual', 'retention')),
  streams       bigint NOT NULL,
  entries       bigint NOT NULL,          -- sum of head seqs: every entry ever logged
  root          bytea  NOT NULL,
  prev_sig      bytea,                    -- the previous checkpoint's signature: checkpoints chain too
  key_id        text   NOT NULL,
  sig           bytea  NOT NULL
);

CREATE TABLE audit.checkpoint_heads (
  checkpoint_id bigint NOT NULL REFERENCES audit.checkpoints,
  stream        text COLLATE "C" NOT NULL,
  seq           bigint NOT NULL,
  hash          bytea  NOT NULL,
  PRIMARY KEY (checkpoint_id, stream)
);

-- Where a chain starts after retention removed its older entries: the last
-- removed entry's (seq, hash), signed, so what remains still verifies.
CREATE TABLE audit.anchors (
  stream        text COLLATE "C" NOT NULL,
  seq           bigint NOT NULL,
  hash          bytea  NOT NULL,
  checkpoint_id bigint NOT NULL REFERENCES audit.checkpoints,
  key_id        text   NOT NULL,
  sig           bytea  NOT NULL,
  PRIMARY KEY (stream, seq)      -- a chain's current anchor is its highest
);

RESET ROLE;
