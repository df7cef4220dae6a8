-- depends: 0500_monitoring
-- What `shieldx db migrate` last applied from db/functions: one row per file
-- with the SHA-256 of its text, and one row '(catalog)' with a digest of the
-- functions and triggers the files left behind. A file whose text and the
-- catalog are unchanged is not re-applied (shieldx/schema.py): re-running a
-- trigger file locks its table against writes until the reload commits.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
SET ROLE shieldx_owner;
CREATE TABLE ops.function_files (
  path       text PRIMARY KEY CHECK (length(path) BETWEEN 1 AND 300),
  sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.function_files IS
  'The function files last applied by migrate (path relative to db/functions, SHA-256 of the text) and the digest of '
  'the functions and triggers they left (path ''(catalog)''); an unchanged file is not re-applied.';
RESET ROLE;
