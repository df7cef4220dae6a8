-- Named errors of key management (SX22x): keys must exist on every node of a cluster.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX220', 'key_not_installed',     409, 'Key file not installed on this node'),
  ('SX221', 'key_needs_distribution', 409, 'Key must be made outside the database and installed on every node')
-- noqa: enable=LT01
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
