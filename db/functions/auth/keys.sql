-- API keys: create, list (masked), rotate, revoke. A key is shown once, when
-- it is made (sx_<key_id>_<secret>); the database keeps only sha256(secret).
-- Every function takes the calling tenant first and treats another tenant's
-- key id as unknown, like the ledger does with account ids.

-- Argument checks shared by create and rotate. Roles are a set: sorted, distinct.
CREATE OR REPLACE FUNCTION auth._check_key_args(
  p_name text, p_roles text[], p_rate_per_s double precision, p_burst double precision, p_idem_key text,
  p_operator boolean DEFAULT false)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_roles text[];
  v_allowed text[] := CASE WHEN p_operator THEN ARRAY['operator']
                           ELSE ARRAY['consumer', 'billing', 'admin', 'auditor'] END;
BEGIN
  IF p_name IS NULL OR length(p_name) NOT BETWEEN 1 AND 200 THEN
    PERFORM ops._fail('SX007', 'name must be 1 to 200 characters', jsonb_build_object('argument', 'name'));
  END IF;
  IF p_idem_key IS NULL OR length(p_idem_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM ops._fail('SX006', 'idempotency key must be 1 to 255 characters',
                      jsonb_build_object('length', length(p_idem_key)));
  END IF;
  SELECT array_agg(DISTINCT r ORDER BY r) INTO v_roles FROM unnest(p_roles) r;
  IF v_roles IS NULL OR array_position(v_roles, NULL) IS NOT NULL OR NOT v_roles <@ v_allowed THEN
    PERFORM ops._fail('SX305', format('roles must be a non-empty subset of %s', array_to_string(v_allowed, ', ')),
                      jsonb_build_object('argument', 'roles', 'allowed', v_allowed));
  END IF;
  -- NaN compares greater than every number in PostgreSQL, so it fails the upper bounds.
  IF p_rate_per_s IS NULL OR NOT (p_rate_per_s > 0 AND p_rate_per_s <= 1000000)
     OR p_burst IS NULL OR NOT (p_burst >= 1 AND p_burst <= 10000000) THEN
    PERFORM ops._fail('SX306', 'rate_per_s must be in (0, 10^6] and burst in [1, 10^7]',
                      jsonb_build_object('rate_per_s', p_rate_per_s, 'burst', p_burst));
  END IF;
  RETURN v_roles;
END
$$;

-- Insert a key with a fresh random id and secret. Returns the full key, or
-- NULL when the (tenant, idempotency key) pair is already taken.
CREATE OR REPLACE FUNCTION auth._insert_key(
  p_tenant text, p_name text, p_roles text[], p_rate_per_s double precision, p_burst double precision,
  p_expires_at timestamptz, p_idem_key text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id text;
  v_secret text;
  v_found boolean;
BEGIN
  FOR attempt IN 1..5 LOOP  -- 48-bit ids: a collision is rare, and then we draw again
    v_id := encode(public.gen_random_bytes(6), 'hex');
    v_secret := encode(public.gen_random_bytes(32), 'hex');
    BEGIN
      INSERT INTO auth.keys (key_id, tenant_id, name, roles, secret_hash, rate_per_s, burst, idem_key, expires_at)
      VALUES (v_id, p_tenant, p_name, p_roles, sha256(convert_to(v_secret, 'UTF8')), p_rate_per_s, p_burst,
              p_idem_key, p_expires_at)
      ON CONFLICT ON CONSTRAINT keys_idem_unique DO NOTHING;
      v_found := FOUND;
    EXCEPTION WHEN unique_violation THEN  -- the random key id is taken
      CONTINUE;
    END;
    IF NOT v_found THEN
      RETURN NULL;
    END IF;
    RETURN 'sx_' || v_id || '_' || v_secret;
  END LOOP;
  RAISE EXCEPTION 'could not draw a free key id' USING ERRCODE = 'XX000';
END
$$;

CREATE OR REPLACE FUNCTION auth.create_key(
  p_tenant text, p_name text, p_roles text[], p_idem_key text,
  p_rate_per_s double precision DEFAULT 50, p_burst double precision DEFAULT 100,
  p_expires_at timestamptz DEFAULT NULL,
  OUT key_id text, OUT tenant_id text, OUT name text, OUT roles text[], OUT rate_per_s double precision,
  OUT burst double precision, OUT created_at timestamptz, OUT expires_at timestamptz, OUT api_key text,
  OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_roles text[];
  k auth.keys;
BEGIN
  v_roles := auth._check_key_args(p_name, p_roles, p_rate_per_s, p_burst, p_idem_key);
  PERFORM credits._require_tenant(p_tenant);
  -- Validated before anything is written: an expiry must lie ahead, and within what every client can represent.
  IF p_expires_at IS NOT NULL AND NOT (p_expires_at > now() AND p_expires_at < '9999-01-01 00:00:00+00') THEN
    PERFORM ops._fail('SX007', 'expires_at must be in the future and before 9999-01-01T00:00:00Z',
                      jsonb_build_object('argument', 'expires_at'));
  END IF;
  PERFORM credits._claim_idem_key(p_tenant, p_idem_key, 'key');
  api_key := auth._insert_key(p_tenant, p_name, v_roles, p_rate_per_s, p_burst, p_expires_at, p_idem_key);
  replayed := api_key IS NULL;
  SELECT * INTO k FROM auth.keys x WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key;
  -- A replay answers with the original key's attributes; its secret was shown once.
  IF replayed AND (k.name IS DISTINCT FROM p_name OR k.roles IS DISTINCT FROM v_roles
                   OR k.rate_per_s IS DISTINCT FROM p_rate_per_s OR k.burst IS DISTINCT FROM p_burst
                   OR k.expires_at IS DISTINCT FROM p_expires_at
                   OR EXISTS (SELECT 1 FROM auth.keys o WHERE o.replaced_by = k.key_id)) THEN
    PERFORM ops._fail('SX005', 'idempotency key already used to create another key',
                      jsonb_build_object('key_id', k.key_id));
  END IF;
  key_id := k.key_id; tenant_id := k.tenant_id; name := k.name; roles := k.roles;
  rate_per_s := k.rate_per_s; burst := k.burst; created_at := k.created_at; expires_at := k.expires_at;
END
$$;
COMMENT ON FUNCTION auth.create_key(
  text, text, text[], text, double precision, double precision, timestamp with time zone) IS
  'Create an API key for a tenant with roles (consumer, billing, admin, auditor), a rate limit and an optional '
  'expiry; idempotent by p_idem_key. Returns the key, with its secret only on creation. SX001 unknown tenant, '
  'SX305 invalid roles, SX306 invalid rate limit, SX005 key reused with other arguments.';

-- The platform operator's keys: no tenant, may act on every tenant. Only a
-- DBA makes them (grants.sql withholds this from the application role).
CREATE OR REPLACE FUNCTION auth.create_operator_key(
  p_name text, p_idem_key text,
  p_rate_per_s double precision DEFAULT 1000000, p_burst double precision DEFAULT 1000000,
  OUT key_id text, OUT name text, OUT api_key text, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_roles text[];
  k auth.keys;
BEGIN
  v_roles := auth._check_key_args(p_name, ARRAY['operator'], p_rate_per_s, p_burst, p_idem_key, true);
  api_key := auth._insert_key(NULL, p_name, v_roles, p_rate_per_s, p_burst, NULL, p_idem_key);
  replayed := api_key IS NULL;
  SELECT * INTO k FROM auth.keys x WHERE x.tenant_id IS NULL AND x.idem_key = p_idem_key;
  IF replayed AND (k.name IS DISTINCT FROM p_name OR k.rate_per_s IS DISTINCT FROM p_rate_per_s
                   OR k.burst IS DISTINCT FROM p_burst) THEN
    PERFORM ops._fail('SX005', 'idempotency key already used to create another operator key',
                      jsonb_build_object('key_id', k.key_id));
  END IF;
  key_id := k.key_id; name := k.name;
END
$$;
COMMENT ON FUNCTION auth.create_operator_key(text, text, double precision, double precision) IS
  'Create a platform operator key (no tenant, acts on every tenant); idempotent by p_idem_key. DBA only. Returns '
  'the key, with its secret only on creation; SX306 invalid rate limit, SX005 key reused with other arguments.';

-- Keys of a tenant, masked: the secret is never stored, so never shown.
CREATE OR REPLACE FUNCTION auth.list_keys(p_tenant text, p_after text DEFAULT NULL, p_limit int DEFAULT 100)
RETURNS TABLE (key_id text, masked text, name text, roles text[], rate_per_s double precision,
               burst double precision, status text, created_at timestamptz, expires_at timestamptz,
               revoked_at timestamptz, replaced_by text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM credits._check_limit(p_limit);
  PERFORM credits._require_tenant(p_tenant);
  RETURN QUERY
    SELECT k.key_id, 'sx_' || k.key_id || '_' || repeat('*', 8), k.name, k.roles, k.rate_per_s, k.burst,
           CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
                WHEN k.expires_at <= now() THEN 'expired'
                ELSE 'active' END,
           k.created_at, k.expires_at, k.revoked_at, k.replaced_by
      FROM auth.keys k
     WHERE k.tenant_id = p_tenant AND (p_after IS NULL OR k.key_id > p_after)
     ORDER BY k.key_id LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION auth.list_keys(text, text, integer) IS
  'A tenant''s API keys, masked (the secret is never stored), keyset-paginated by key_id after p_after, at most '
  'p_limit. SX001 unknown tenant, SX007 invalid limit.';

-- Rotate: a new key with the same name, roles and limits; the old one stays
-- valid for p_grace_s seconds (0: stops now) so clients can switch over.
CREATE OR REPLACE FUNCTION auth.rotate_key(
  p_tenant text, p_key_id text, p_idem_key text, p_grace_s int DEFAULT 0,
  OUT key_id text, OUT tenant_id text, OUT name text, OUT roles text[], OUT rate_per_s double precision,
  OUT burst double precision, OUT created_at timestamptz, OUT expires_at timestamptz, OUT api_key text,
  OUT replaced_key_id text, OUT replaced_key_expires_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  old auth.keys;
  k auth.keys;
BEGIN
  IF p_idem_key IS NULL OR length(p_idem_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM ops._fail('SX006', 'idempotency key must be 1 to 255 characters', '{}');
  END IF;
  IF p_grace_s IS NULL OR p_grace_s NOT BETWEEN 0 AND 604800 THEN
    PERFORM ops._fail('SX007', 'grace must be 0 to 604800 seconds', jsonb_build_object('argument', 'grace_s'));
  END IF;
  PERFORM credits._claim_idem_key(p_tenant, p_idem_key, 'key');
  -- The old key's row lock serialises concurrent rotations of it.
  SELECT * INTO old FROM auth.keys x WHERE x.key_id = p_key_id AND x.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX304', format('key %s not found', p_key_id), jsonb_build_object('key_id', p_key_id));
  END IF;
  SELECT * INTO k FROM auth.keys x WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key;
  IF FOUND THEN
    IF old.replaced_by IS DISTINCT FROM k.key_id THEN
      PERFORM ops._fail('SX005', 'idempotency key already used for another call',
                        jsonb_build_object('key_id', k.key_id));
    END IF;
    replayed := true;
  ELSE
    IF old.revoked_at IS NOT NULL OR old.replaced_by IS NOT NULL OR old.expires_at <= now() THEN
      PERFORM ops._fail('SX307', format('key %s is revoked, expired or already rotated', p_key_id),
                        jsonb_build_object('key_id', p_key_id));
    END IF;
    api_key := auth._insert_key(p_tenant, old.name, old.roles, old.rate_per_s, old.burst, old.expires_at,
                                p_idem_key);
    SELECT * INTO k FROM auth.keys x WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key;
    UPDATE auth.keys x
       SET replaced_by = k.key_id,
           expires_at = least(coalesce(x.expires_at, 'infinity'), now() + make_interval(secs => p_grace_s))
     WHERE x.key_id = old.key_id
    RETURNING * INTO old;
    replayed := false;
  END IF;
  key_id := k.key_id; tenant_id := k.tenant_id; name := k.name; roles := k.roles;
  rate_per_s := k.rate_per_s; burst := k.burst; created_at := k.created_at; expires_at := k.expires_at;
  replaced_key_id := old.key_id; replaced_key_expires_at := old.expires_at;
END
$$;
COMMENT ON FUNCTION auth.rotate_key(text, text, text, integer) IS
  'Replace a tenant''s key by a new one with the same name, roles and limits; the old key stays valid for '
  'p_grace_s seconds (0: stops now). Idempotent by p_idem_key. Returns the new key and its secret; SX304 unknown '
  'key, SX307 key not active, SX005 key reused.';

-- Revoke: stops the key at once on every API replica (each lease re-checks).
-- Revoking a revoked key is a no-op (changed = false).
CREATE OR REPLACE FUNCTION auth.revoke_key(
  p_tenant text, p_key_id text, OUT key_id text, OUT revoked_at timestamptz, OUT changed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE auth.keys x SET revoked_at = now()
   WHERE x.key_id = p_key_id AND x.tenant_id = p_tenant AND x.revoked_at IS NULL
  RETURNING x.key_id, x.revoked_at INTO key_id, revoked_at;
  changed := FOUND;
  IF NOT changed THEN
    SELECT x.key_id, x.revoked_at INTO key_id, revoked_at
      FROM auth.keys x WHERE x.key_id = p_key_id AND x.tenant_id = p_tenant;
    IF NOT FOUND THEN
      PERFORM ops._fail('SX304', format('key %s not found', p_key_id), jsonb_build_object('key_id', p_key_id));
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION auth.revoke_key(text, text) IS
  'Revoke a tenant''s API key at once on every API replica. Returns changed = false when it was already revoked; '
  'SX304 unknown key.';

CREATE OR REPLACE FUNCTION auth.revoke_operator_key(
  p_key_id text, OUT key_id text, OUT revoked_at timestamptz, OUT changed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE auth.keys x SET revoked_at = now()
   WHERE x.key_id = p_key_id AND x.tenant_id IS NULL AND x.revoked_at IS NULL
  RETURNING x.key_id, x.revoked_at INTO key_id, revoked_at;
  changed := FOUND;
  IF NOT changed THEN
    SELECT x.key_id, x.revoked_at INTO key_id, revoked_at FROM auth.keys x
     WHERE x.key_id = p_key_id AND x.tenant_id IS NULL;
    IF NOT FOUND THEN
      PERFORM ops._fail('SX304', format('operator key %s not found', p_key_id),
                        jsonb_build_object('key_id', p_key_id));
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION auth.revoke_operator_key(text) IS
  'Revoke a platform operator key. Returns changed = false when it was already revoked; SX304 unknown key.';
