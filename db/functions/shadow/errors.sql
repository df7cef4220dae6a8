-- Named errors of shadow evaluation (class SX4xx). Generic failures reuse the
-- core's codes: SX005 idempotency_conflict, SX006 invalid_idempotency_key,
-- SX007 invalid_argument, SX011 already_exists.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX401', 'unknown_experiment',  404, 'Unknown experiment'),
  ('SX402', 'unknown_rule',        404, 'Unknown rule or rule version'),
  ('SX403', 'invalid_observation', 422, 'Malformed observation batch; nothing was stored'),
  ('SX404', 'batch_too_large',     413, 'Observation batch has too many items; nothing was stored'),
  ('SX405', 'invalid_experiment',  422, 'Invalid experiment configuration'),
  ('SX406', 'invalid_transition',  409, 'The experiment cannot make this transition in its current state')
-- noqa: enable=LT01
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
