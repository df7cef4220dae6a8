-- depends: 0200_audit
-- Payment data (schema vault) and personal data (schema privacy).
-- Key MATERIAL never lives in a table: keys are files in the keyring
-- directory (setting shieldx.key_dir); vault.keys only records their ids and state.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA vault AUTHORIZATION shieldx_owner;
CREATE SCHEMA privacy AUTHORIZATION shieldx_owner;
SET ROLE shieldx_owner;

CREATE TABLE vault.keys (
  key_id     text PRIMARY KEY CHECK (key_id ~ '^k[0-9a-z]{6,40}$'),
  purpose    text NOT NULL CHECK (purpose IN ('audit', 'payment', 'subject')),
  state      text NOT NULL DEFAULT 'current' CHECK (state IN ('current', 'previous', 'retired')),
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz
);
CREATE UNIQUE INDEX keys_one_current ON vault.keys (purpose) WHERE state = 'current';

-- One row per top-up paid by card. Card number and expiry are AES-256-GCM
-- ciphertexts (nonce || ciphertext || tag) bound to (tenant, account, entry);
-- only the last four digits are kept in clear.
CREATE TABLE vault.payments (
  entry_id     bigint PRIMARY KEY,              -- credits.entries (which retention may archive)
  tenant_id    text   NOT NULL,
  account_id   bigint NOT NULL,
  key_id       text   NOT NULL REFERENCES vault.keys,
  pan_ct       bytea  NOT NULL,
  expiry_ct    bytea  NOT NULL,
  pan_last4    text   NOT NULL CHECK (pan_last4 ~ '^[0-9]{4}$'),
  subject_id   text,                      -- the card holder, a data subject
  holder_ct    bytea,                     -- under the subject's key
  ip_masked    text,                      -- /24 (IPv4) or /48 (IPv6)
  ip_ct        bytea,                     -- under the subject's key
  ua_ct        bytea,                     -- under the subject's key
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_key ON vault.payments (key_id);
CREATE INDEX payments_subject ON vault.payments (subject_id) WHERE subject_id IS NOT NULL;

-- Per-subject data keys, wrapped (AES-256-GCM) by the current 'subject' master
-- key. Erasure deletes the row: the subject's data can no longer be decrypted.
CREATE TABLE privacy.subject_keys (
  subject_id text PRIMARY KEY CHECK (length(subject_id) BETWEEN 1 AND 200),
  key_id     text  NOT NULL REFERENCES vault.keys,
  wrapped    bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE privacy.erasures (
  subject_id text PRIMARY KEY,
  idem_key   text NOT NULL,
  erased_at  timestamptz NOT NULL DEFAULT now(),
  had_key    boolean NOT NULL
);

RESET ROLE;
