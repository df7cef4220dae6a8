-- Named errors of the audit log, payment data and privacy: SX2xx.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX201', 'invalid_card',       422, 'Invalid card number or expiry'),
  ('SX202', 'key_unavailable',    503, 'Key unavailable'),
  ('SX203', 'decryption_failed',  409, 'Decryption failed'),
  ('SX204', 'unknown_payment',    404, 'Unknown card payment'),
  ('SX205', 'subject_erased',     410, 'Data subject was erased'),
  ('SX206', 'invalid_checkpoint', 422, 'Invalid or unknown audit checkpoint'),
  ('SX207', 'checkpoint_pruned',  410, 'Audit checkpoint heads were pruned')
-- noqa: enable=LT01
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
