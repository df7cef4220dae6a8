-- Canonical serialization of an audit entry, version 1:
--   'SXA1' then each field as <length in characters>:<text>, NULL as '-'
-- (netstring-like: NULL and '' never serialize alike, and no field boundary
-- can shift), encoded UTF-8; the entry's hash is SHA-256(prev_hash || that).
-- Numbers are decimal text, times microseconds since the epoch (no TimeZone
-- or DateStyle involved). These are plain SQL expressions without SET clauses
-- so the planner inlines them into the trigger's INSERT and into verify()'s
-- scan (no call overhead); every reference is schema-qualified.

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

-- p_at is the entry's time in epoch microseconds (audit._micros): passed as a
-- plain number so that every argument stays cheap and the whole expression inlines.
CREATE OR REPLACE FUNCTION audit._hash_v1(
  p_prev bytea, p_stream text, p_seq bigint, p_source text, p_op text, p_actor text, p_app text,
  p_txid bigint, p_at bigint, p_payload text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256(p_prev || pg_catalog.convert_to(
           'SXA1' || audit._f(p_stream) || audit._f(p_seq::text) || audit._f(p_source) || audit._f(p_op)
           || audit._f(p_actor) || audit._f(p_app) || audit._f(p_txid::text)
           || audit._f(p_at::text) || audit._f(p_payload), 'UTF8'))
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
