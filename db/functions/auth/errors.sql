-- Named errors of access control and rate limiting (SX3xx). Some are raised
-- by the API only (it has the HTTP request), but live here so that one
-- catalog names every refusal.
-- The rows are aligned as a table: spacing rule LT01 is off for them.
-- noqa: disable=LT01
INSERT INTO ops.error_catalog (sqlstate, name, http_status, title) VALUES
  ('SX301', 'unauthenticated',    401, 'Missing, malformed, unknown, revoked or expired API key'),
  ('SX302', 'forbidden',          403, 'The API key lacks a role this operation requires'),
  ('SX303', 'rate_limited',       429, 'Rate limit exceeded'),
  ('SX304', 'unknown_key',        404, 'Unknown API key'),
  ('SX305', 'invalid_role',       422, 'Roles must be a non-empty subset of consumer, billing, admin, auditor'),
  ('SX306', 'invalid_rate_limit', 422, 'rate_per_s must be in (0, 10^6] and burst in [1, 10^7]'),
  ('SX307', 'key_not_active',     409, 'The key is revoked, expired or already rotated'),
  ('SX308', 'too_large',          413, 'Request body or batch too large'),
  ('SX309', 'invalid_json',       400, 'Malformed JSON body: a syntax error, a member twice, or nested too deep'),
  ('SX310', 'unsupported_media_type', 415, 'Request body must be application/json')
-- noqa: enable=LT01
ON CONFLICT (sqlstate) DO UPDATE
  SET name = excluded.name, http_status = excluded.http_status, title = excluded.title;
