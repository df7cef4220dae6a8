-- Named errors of batches (credits.apply_batch): SX12x.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX120', 'invalid_batch',       422, 'Invalid batch: nothing was applied'),
  ('SX121', 'batch_item_refused',  409, 'An item of an atomic batch was refused: nothing was applied'),
  ('SX122', 'batch_key_contended', 409, 'An idempotency key of the batch was used concurrently: retry the batch')
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
