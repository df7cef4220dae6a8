-- Named errors of reservations (holds) and distributed transactions: SX1xx.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX101', 'unknown_hold',                   404, 'Unknown hold'),
  ('SX102', 'hold_aborted',                   409, 'Hold was aborted'),
  ('SX103', 'hold_committed',                 409, 'Hold was already committed'),
  ('SX104', 'hold_expired',                   410, 'Hold has expired'),
  ('SX105', 'capture_exceeds_hold',           422, 'Capture amount exceeds the held amount'),
  ('SX106', 'invalid_ttl',                    422, 'Time-to-live or timeout out of range'),
  ('SX107', 'unknown_dist_transaction',       404, 'Unknown distributed transaction'),
  ('SX108', 'dist_transaction_aborted',       409, 'Distributed transaction was aborted'),
  ('SX109', 'dist_transaction_committed',     409, 'Distributed transaction was committed'),
  ('SX110', 'dist_transaction_not_ready',     409, 'Distributed transaction is not prepared or not decided'),
  ('SX111', 'dist_transaction_timed_out',     409, 'Distributed transaction passed its deadline undecided'),
  ('SX112', 'invalid_legs',                   422, 'Invalid legs of a distributed transaction'),
  ('SX113', 'hold_in_dist_transaction',       409, 'Hold belongs to a distributed transaction'),
  ('SX114', 'pending_distributed_credit',     409, 'Account has a pending distributed credit')
-- noqa: enable=LT01
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
