-- depends: 0002_roles
-- Operational schema: the catalog of named errors every layer shares.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA ops AUTHORIZATION shieldx_owner;

-- One row per failure the SQL API can raise. The API maps SQLSTATE to HTTP
-- status from this table, and the README's error table is checked against it.
CREATE TABLE ops.error_catalog (
  -- A SQLSTATE is exactly five characters.
  -- squawk-ignore ban-char-field
  sqlstate    char(5) PRIMARY KEY CHECK (sqlstate ~ '^SX[0-9]{3}$'),
  name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]*$'),
  http_status int  NOT NULL CHECK (http_status BETWEEN 400 AND 599),
  title       text NOT NULL
);
ALTER TABLE ops.error_catalog OWNER TO shieldx_owner;
