-- Tenants: created idempotently by their id (the id is the idempotency key).
CREATE OR REPLACE FUNCTION credits.create_tenant(
  p_tenant text, p_name text,
  OUT tenant_id text, OUT name text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.tenants;
BEGIN
  IF p_tenant IS NULL OR p_tenant !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
    PERFORM ops._fail('SX007', 'tenant id must match ^[a-z0-9][a-z0-9_-]{0,62}$',
                      jsonb_build_object('argument', 'tenant_id'));
  END IF;
  PERFORM credits._check_text('name', p_name, 200);
  INSERT INTO credits.tenants AS x (tenant_id, name) VALUES (p_tenant, p_name)
  ON CONFLICT ON CONSTRAINT tenants_pkey DO NOTHING
  RETURNING x.* INTO t;
  replayed := NOT FOUND;
  IF replayed THEN
    SELECT * INTO t FROM credits.tenants x WHERE x.tenant_id = p_tenant;
    IF t.name IS DISTINCT FROM p_name THEN
      PERFORM ops._fail('SX011', format('tenant %s already exists with another name', p_tenant),
                        jsonb_build_object('tenant_id', p_tenant));
    END IF;
  END IF;
  tenant_id := t.tenant_id; name := t.name; created_at := t.created_at;
END
$$;
COMMENT ON FUNCTION credits.create_tenant(text, text) IS
  'Create a tenant, idempotent by its id. Returns the tenant (replayed on a repeat); SX007 invalid id or name, '
  'SX011 id taken with another name.';
