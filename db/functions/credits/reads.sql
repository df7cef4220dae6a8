-- Reads. Each checks the tenant, so an id from another tenant is "unknown".

CREATE OR REPLACE FUNCTION credits.get_account(
  p_tenant text, p_account bigint,
  OUT account_id bigint, OUT tenant_id text, OUT name text, OUT status text,
  OUT balance bigint, OUT held bigint, OUT available bigint, OUT entry_seq bigint,
  OUT created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  SELECT a.account_id, a.tenant_id, a.name, a.status, a.balance, a.held, a.balance - a.held,
         a.entry_seq, a.created_at
    INTO account_id, tenant_id, name, status, balance, held, available, entry_seq, created_at
    FROM credits.accounts a WHERE a.account_id = p_account AND a.tenant_id = p_tenant;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX002', format('account %s not found', p_account), jsonb_build_object('account_id', p_account));
  END IF;
END
$$;
COMMENT ON FUNCTION credits.get_account(text, bigint) IS
  'An account of the tenant: status, balance, held, available and its journal position. SX002 unknown account.';

-- Accounts of a tenant, keyset-paginated by account_id.
CREATE OR REPLACE FUNCTION credits.list_accounts(p_tenant text, p_after bigint DEFAULT NULL, p_limit int DEFAULT 100)
RETURNS TABLE (account_id bigint, name text, status text, balance bigint, held bigint, available bigint,
               created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM credits._check_limit(p_limit);
  PERFORM credits._require_tenant(p_tenant);
  RETURN QUERY
    SELECT a.account_id, a.name, a.status, a.balance, a.held, a.balance - a.held, a.created_at
      FROM credits.accounts a
     WHERE a.tenant_id = p_tenant AND (p_after IS NULL OR a.account_id > p_after)
     ORDER BY a.account_id LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION credits.list_accounts(text, bigint, integer) IS
  'A tenant''s accounts with balances, keyset-paginated by account_id after p_after, at most p_limit. SX001 '
  'unknown tenant, SX007 invalid limit.';

-- An account's journal, newest first, keyset-paginated by seq: pass the last
-- seq you saw as p_before to get the next page. Stable under concurrent writes.
CREATE OR REPLACE FUNCTION credits.list_entries(
  p_tenant text, p_account bigint, p_before bigint DEFAULT NULL, p_limit int DEFAULT 100)
RETURNS TABLE (entry_id bigint, seq bigint, kind text, amount bigint, balance_after bigint, reason text,
               idem_key text, counterparty bigint, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM credits._check_limit(p_limit);
  PERFORM credits._require_account(p_tenant, p_account);
  RETURN QUERY
    SELECT e.entry_id, e.seq, e.kind, e.amount, e.balance_after, e.reason, e.idem_key, e.counterparty, e.created_at
      FROM credits.entries e
     WHERE e.account_id = p_account AND (p_before IS NULL OR e.seq < p_before)
     ORDER BY e.seq DESC LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION credits.list_entries(text, bigint, bigint, integer) IS
  'An account''s journal, newest first, keyset-paginated by seq before p_before (stable under concurrent writes). '
  'SX002 unknown account, SX007 invalid limit.';

-- One journal entry of an account: what a movement's answer (201) points at.
CREATE OR REPLACE FUNCTION credits.get_entry(
  p_tenant text, p_account bigint, p_entry bigint,
  OUT entry_id bigint, OUT seq bigint, OUT kind text, OUT amount bigint, OUT balance_after bigint, OUT reason text,
  OUT idem_key text, OUT counterparty bigint, OUT created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM credits._require_account(p_tenant, p_account);
  SELECT e.entry_id, e.seq, e.kind, e.amount, e.balance_after, e.reason, e.idem_key, e.counterparty, e.created_at
    INTO entry_id, seq, kind, amount, balance_after, reason, idem_key, counterparty, created_at
    FROM credits.entries e WHERE e.entry_id = p_entry AND e.account_id = p_account;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX019', format('entry %s not found in account %s', p_entry, p_account),
                      jsonb_build_object('account_id', p_account, 'entry_id', p_entry));
  END IF;
END
$$;
COMMENT ON FUNCTION credits.get_entry(text, bigint, bigint) IS
  'One journal entry of a tenant''s account (archived entries are no longer here). SX002 unknown account, SX019 '
  'unknown entry.';
