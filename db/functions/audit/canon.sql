-- Canonical serialization of an audit entry, version 1 (what SHA-256 hashes):
--   prev_hash (32 bytes) || seq, txid (8-byte big-endian integers each) ||
--   logged_at (8-byte big-endian microseconds since 2000-01-01 UTC) ||
--   UTF-8 of 'SXA1' then stream, source, op, actor, app, payload, each as
--   <length in characters>:<text>, and NULL (only app may be NULL) as '-'.
-- Fixed-width binary fields need no prefix; every text field is length-
-- prefixed, so NULL and '' never serialize alike and no boundary can shift.
-- No TimeZone, DateStyle or client_encoding is involved. These are plain SQL
-- expressions without SET clauses so the planner inlines them into the
-- trigger's INSERT and into verify()'s scan (no call overhead); arguments
-- must stay simple (columns, parameters) for that. Every name is qualified.

CREATE OR REPLACE FUNCTION audit._f(p text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN p IS NULL THEN '-' ELSE pg_catalog.length(p)::text || ':' || p END
$$;

CREATE OR REPLACE FUNCTION audit._micros(p timestamptz)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT (EXTRACT(epoch FROM p) * 1000000)::bigint
$$;

CREATE OR REPLACE FUNCTION audit._hash_v1(
  p_prev bytea, p_stream text, p_seq bigint, p_source text, p_op text, p_actor text, p_app text,
  p_txid bigint, p_at timestamptz, p_payload text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256(p_prev || pg_catalog.int8send(p_seq) || pg_catalog.int8send(p_txid)
           || pg_catalog.timestamptz_send(p_at)
           || pg_catalog.convert_to('SXA1' || pg_catalog.length(p_stream)::text || ':' || p_stream
                || pg_catalog.length(p_source)::text || ':' || p_source || pg_catalog.length(p_op)::text || ':' || p_op
                || pg_catalog.length(p_actor)::text || ':' || p_actor
                || CASE WHEN p_app IS NULL THEN '-' ELSE pg_catalog.length(p_app)::text || ':' || p_app END
                || pg_catalog.length(p_payload)::text || ':' || p_payload, 'UTF8'))
$$;

-- The "previous hash" of a chain's first entry: bound to the stream's name,
-- so an entry cannot be moved to the start of another chain.
CREATE OR REPLACE FUNCTION audit._genesis(p_stream text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256(pg_catalog.convert_to('SXA1 genesis ' || p_stream, 'UTF8'))
$$;

-- A journal entry as the audit payload: a JSON object built by hand, because
-- to_jsonb(row) costs several times more in the hot path. Field order and
-- formats are part of version 1 (created_at in epoch microseconds).
CREATE OR REPLACE FUNCTION audit._entry_json(e credits.entries)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT '{"entry_id":' || e.entry_id || ',"account_id":' || e.account_id
      || ',"tenant_id":' || pg_catalog.to_json(e.tenant_id)::text || ',"seq":' || e.seq
      || ',"kind":"' || e.kind || '","amount":' || e.amount || ',"balance_after":' || e.balance_after
      || ',"reason":' || coalesce(pg_catalog.to_json(e.reason)::text, 'null')
      || ',"idem_key":' || pg_catalog.to_json(e.idem_key)::text || ',"leg":' || e.leg
      || ',"counterparty":' || coalesce(e.counterparty::text, 'null')
      || ',"created_at":' || audit._micros(e.created_at) || '}'
$$;
