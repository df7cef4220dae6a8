-- Argument checks shared by every movement. Bad input raises a named error
-- before anything is written.
--
-- Private helpers (name starts with "_") carry no SET search_path: only the
-- owner may execute them, and they run inside a public SECURITY DEFINER
-- function whose search_path is already fixed. A per-call SET would cost a
-- GUC save/restore on the hottest path (measured: ~10% of consume's CPU).
-- The rule as a value (NULL when the arguments are fine), for callers that
-- report rather than raise (a batch's items); STABLE as jsonb_build_object
-- is, so it inlines into the caller.
CREATE OR REPLACE FUNCTION credits._movement_problem(p_amount bigint, p_idem_key text, p_reason text)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN p_amount IS NULL OR p_amount < 1 OR p_amount > 1000000000000000 THEN
      ops._problem('SX003', pg_catalog.format('amount must be between 1 and 10^15, got %s',
                                              coalesce(p_amount::text, 'NULL')),
                   pg_catalog.jsonb_build_object('amount', p_amount))
    WHEN p_idem_key IS NULL OR pg_catalog.length(p_idem_key) NOT BETWEEN 1 AND 255 THEN
      ops._problem('SX006', 'idempotency key must be 1 to 255 characters',
                   pg_catalog.jsonb_build_object('length', pg_catalog.length(p_idem_key)))
    WHEN pg_catalog.length(p_reason) > 500 THEN
      ops._problem('SX007', 'reason must be at most 500 characters',
                   pg_catalog.jsonb_build_object('argument', 'reason', 'length', pg_catalog.length(p_reason)))
  END
$$;

CREATE OR REPLACE FUNCTION credits._check_movement(p_amount bigint, p_idem_key text, p_reason text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_problem jsonb := credits._movement_problem(p_amount, p_idem_key, p_reason);
BEGIN
  IF v_problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_problem);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION credits._check_text(p_argument text, p_value text, p_max int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_value IS NULL OR length(p_value) NOT BETWEEN 1 AND p_max THEN
    PERFORM ops._fail('SX007', format('%s must be 1 to %s characters', p_argument, p_max),
                      jsonb_build_object('argument', p_argument));
  END IF;
END
$$;

-- Why a guarded debit matched no row: unknown account (also when it belongs to
-- another tenant, so ids leak nothing), not open, or not enough available.
-- _debit_problem answers as a value, _debit_refused raises it.
CREATE OR REPLACE FUNCTION credits._debit_problem(p_tenant text, p_account bigint, p_amount bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  a credits.accounts;
BEGIN
  SELECT * INTO a FROM credits.accounts WHERE account_id = p_account AND tenant_id = p_tenant;
  IF NOT FOUND THEN
    RETURN ops._problem('SX002', format('account %s not found', p_account),
                        jsonb_build_object('account_id', p_account));
  ELSIF a.status <> 'open' THEN
    RETURN ops._problem('SX008', format('account %s is %s', p_account, a.status),
                        jsonb_build_object('account_id', p_account, 'status', a.status));
  END IF;
  RETURN ops._problem('SX004',
    format('account %s has %s credits available, %s requested', p_account, a.balance - a.held, p_amount),
    jsonb_build_object('account_id', p_account, 'available', a.balance - a.held, 'requested', p_amount));
END
$$;

CREATE OR REPLACE FUNCTION credits._debit_refused(p_tenant text, p_account bigint, p_amount bigint)
RETURNS void
LANGUAGE sql
AS $$
  SELECT ops._fail_problem(credits._debit_problem(p_tenant, p_account, p_amount))
$$;

-- Why a guarded credit matched no row.
CREATE OR REPLACE FUNCTION credits._credit_problem(p_tenant text, p_account bigint, p_amount bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  a credits.accounts;
BEGIN
  SELECT * INTO a FROM credits.accounts WHERE account_id = p_account AND tenant_id = p_tenant;
  IF NOT FOUND THEN
    RETURN ops._problem('SX002', format('account %s not found', p_account),
                        jsonb_build_object('account_id', p_account));
  ELSIF a.status = 'closed' THEN
    RETURN ops._problem('SX008', format('account %s is closed', p_account),
                        jsonb_build_object('account_id', p_account, 'status', a.status));
  END IF;
  RETURN ops._problem('SX010', format('account %s balance %s cannot grow by %s', p_account, a.balance, p_amount),
                      jsonb_build_object('account_id', p_account, 'balance', a.balance, 'requested', p_amount));
END
$$;

CREATE OR REPLACE FUNCTION credits._credit_refused(p_tenant text, p_account bigint, p_amount bigint)
RETURNS void
LANGUAGE sql
AS $$
  SELECT ops._fail_problem(credits._credit_problem(p_tenant, p_account, p_amount))
$$;

-- Arguments and existence checks shared by the list and read functions.
CREATE OR REPLACE FUNCTION credits._check_limit(p_limit int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
    PERFORM ops._fail('SX007', 'limit must be between 1 and 1000', jsonb_build_object('argument', 'limit'));
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION credits._require_tenant(p_tenant text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  PERFORM 1 FROM credits.tenants t WHERE t.tenant_id = p_tenant;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX001', format('tenant %s not found', p_tenant), jsonb_build_object('tenant_id', p_tenant));
  END IF;
END
$$;

-- Unknown also when the account belongs to another tenant: ids leak nothing.
CREATE OR REPLACE FUNCTION credits._require_account(p_tenant text, p_account bigint)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  PERFORM 1 FROM credits.accounts a WHERE a.account_id = p_account AND a.tenant_id = p_tenant;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX002', format('account %s not found', p_account), jsonb_build_object('account_id', p_account));
  END IF;
END
$$;
