-- Named errors of the credits ledger: SQLSTATE, name, HTTP status, title.
-- Class SX0xx is the ledger core; later domains take their own hundreds.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX001', 'unknown_tenant',          404, 'Unknown tenant'),
  ('SX002', 'unknown_account',         404, 'Unknown account'),
  ('SX003', 'invalid_amount',          422, 'Amount must be a whole number of credits between 1 and 10^15'),
  ('SX004', 'insufficient_funds',      409, 'Insufficient available credits'),
  ('SX005', 'idempotency_conflict',    409, 'Idempotency key already used with different arguments'),
  ('SX006', 'invalid_idempotency_key', 422, 'Idempotency key must be 1 to 255 characters'),
  ('SX007', 'invalid_argument',        422, 'Invalid argument'),
  ('SX008', 'account_not_open',        409, 'Account is frozen or closed'),
  ('SX009', 'same_account',            422, 'Source and destination accounts are the same'),
  ('SX010', 'balance_limit',           422, 'Balance would exceed the largest representable amount'),
  ('SX011', 'already_exists',          409, 'Already exists with different attributes'),
  ('SX019', 'unknown_entry',           404, 'Unknown journal entry')
-- noqa: enable=LT01
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
