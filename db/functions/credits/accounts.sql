-- Accounts: opened under an idempotency key, frozen (no debits) or closed
-- (no movement at all) by a guarded status change.

CREATE OR REPLACE FUNCTION credits.create_account(
  p_tenant text, p_name text, p_idem_key text,
  OUT account_id bigint, OUT tenant_id text, OUT name text, OUT status text,
  OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  a credits.accounts;
BEGIN
  PERFORM credits._check_text('name', p_name, 200);
  IF p_idem_key IS NULL OR length(p_idem_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM ops._fail('SX006', 'idempotency key must be 1 to 255 characters', '{}');
  END IF;
  PERFORM credits._require_tenant(p_tenant);
  PERFORM credits._claim_idem_key(p_tenant, p_idem_key, 'account');
  -- Either constraint may fire: the key (a replay) or the name (taken).
  INSERT INTO credits.accounts AS x (tenant_id, name, idem_key) VALUES (p_tenant, p_name, p_idem_key)
  ON CONFLICT DO NOTHING
  RETURNING x.* INTO a;
  replayed := NOT FOUND;
  IF replayed THEN
    SELECT * INTO a FROM credits.accounts x WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key;
    IF NOT FOUND THEN
      PERFORM ops._fail('SX011', format('account name %L is taken in tenant %s', p_name, p_tenant),
                        jsonb_build_object('tenant_id', p_tenant, 'name', p_name));
    ELSIF a.name IS DISTINCT FROM p_name THEN
      PERFORM ops._fail('SX005', 'idempotency key already used to open another account',
                        jsonb_build_object('account_id', a.account_id));
    END IF;
  END IF;
  account_id := a.account_id; tenant_id := a.tenant_id; name := a.name;
  status := a.status; created_at := a.created_at;
END
$$;
COMMENT ON FUNCTION credits.create_account(text, text, text) IS
  'Open an account for a tenant, idempotent by p_idem_key. Returns the account (replayed on a repeat); SX001 '
  'unknown tenant, SX007 invalid name, SX011 name taken in the tenant, SX005 key reused with other arguments.';

-- open -> frozen -> open, open|frozen -> closed (final; only with zero balance).
CREATE OR REPLACE FUNCTION credits.set_account_status(
  p_tenant text, p_account bigint, p_status text,
  OUT account_id bigint, OUT status text, OUT changed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  a credits.accounts;
BEGIN
  IF p_status IS NULL OR p_status NOT IN ('open', 'frozen', 'closed') THEN
    PERFORM ops._fail('SX007', 'status must be open, frozen or closed', jsonb_build_object('argument', 'status'));
  END IF;
  SELECT * INTO a FROM credits.accounts x WHERE x.account_id = p_account AND x.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX002', format('account %s not found', p_account), jsonb_build_object('account_id', p_account));
  END IF;
  account_id := a.account_id;
  IF a.status = p_status THEN  -- already there: an idempotent no-op
    status := a.status; changed := false; RETURN;
  END IF;
  IF a.status = 'closed' THEN
    PERFORM ops._fail('SX008', format('account %s is closed', p_account),
                      jsonb_build_object('account_id', p_account, 'status', a.status));
  END IF;
  IF p_status = 'closed' AND a.balance <> 0 THEN
    PERFORM ops._fail('SX007', format('account %s still holds %s credits', p_account, a.balance),
                      jsonb_build_object('argument', 'status', 'balance', a.balance));
  END IF;
  UPDATE credits.accounts x SET status = p_status WHERE x.account_id = p_account;
  status := p_status; changed := true;
END
$$;
COMMENT ON FUNCTION credits.set_account_status(text, bigint, text) IS
  'Set an account''s status: open, frozen, or closed (final, only at a zero balance). Returns changed = false '
  'when already so; SX002 unknown account, SX007 invalid status or a balance left on close, SX008 account already '
  'closed, SX114 a distributed credit pending.';
