-- Idempotency: a key names one call per tenant. The answering entry (leg 0)
-- records the call's arguments, so a replay is recognised, and a key reused
-- with other arguments is refused, without any extra table or write.
-- _entry_replay answers with the entry (a replay), a problem (SX005: the key
-- was used with other arguments), or neither (the key is unused);
-- _replayed_entry raises the problem.
CREATE OR REPLACE FUNCTION credits._entry_replay(
  p_tenant text, p_idem_key text, p_kind text, p_account bigint, p_amount bigint,
  p_reason text, p_counterparty bigint, OUT e credits.entries, OUT problem jsonb)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  SELECT * INTO e FROM credits.entries x
   WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key AND x.leg = 0;
  IF FOUND AND (e.kind <> p_kind OR e.account_id <> p_account OR e.amount <> p_amount
                OR e.reason IS DISTINCT FROM p_reason OR e.counterparty IS DISTINCT FROM p_counterparty) THEN
    problem := ops._problem('SX005',
      format('idempotency key %L was used for a %s of %s on account %s', p_idem_key, e.kind, abs(e.amount), e.account_id),
      jsonb_build_object('entry_id', e.entry_id));
    e := NULL;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION credits._replayed_entry(
  p_tenant text, p_idem_key text, p_kind text, p_account bigint, p_amount bigint,
  p_reason text, p_counterparty bigint)
RETURNS credits.entries
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_r record;
BEGIN
  SELECT r.* INTO v_r
    FROM credits._entry_replay(p_tenant, p_idem_key, p_kind, p_account, p_amount, p_reason, p_counterparty) r;
  IF v_r.problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_r.problem);
  END IF;
  RETURN v_r.e;
END
$$;

-- An idempotency key names one call of a tenant, whatever the operation:
-- the key of a consume cannot also open an account, make a hold, a transfer
-- or an API key. Every keyed call of a tenant (credits.create_account, grant_credits,
-- consume, transfer, reserve; vault.top_up through grant_credits;
-- auth.create_key, auth.rotate_key) claims its key here first, before
-- anything is written: calls with one key wait for each other (a
-- transaction-level advisory lock, no write), then the key's first use, in
-- whichever table it is, decides. A key used by another operation is SX005;
-- the same operation goes on to compare its arguments as before. Keys
-- starting with "dist:" name the legs of distributed transactions.
-- The pieces, shared with credits.apply_batch (which claims all its items'
-- keys at once, in lock order): the reserved prefix, the lock's key, and
-- where each key was first used.
CREATE OR REPLACE FUNCTION credits._dist_key_problem(p_idem_key text)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.left(p_idem_key, 5) = 'dist:' THEN
    ops._problem('SX007', 'idempotency keys starting with "dist:" are reserved',
                 pg_catalog.jsonb_build_object('argument', 'idempotency_key'))
  END
$$;

-- STABLE, not IMMUTABLE: the planner would evaluate an IMMUTABLE call with
-- constant arguments through the function manager instead of inlining it.
CREATE OR REPLACE FUNCTION credits._idem_lock_key(p_tenant text, p_idem_key text)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.hashtextextended('shieldx.idem:' || coalesce(p_tenant, '') || ':' || p_idem_key, 0)
$$;

CREATE OR REPLACE FUNCTION credits._idem_key_uses(p_tenant text, p_idem_key text)
RETURNS TABLE (op text, facts jsonb)
LANGUAGE sql STABLE
AS $$
  SELECT 'account', pg_catalog.jsonb_build_object('account_id', a.account_id)
    FROM credits.accounts AS a WHERE a.tenant_id = p_tenant AND a.idem_key = p_idem_key
  UNION ALL
  SELECT CASE e.kind WHEN 'transfer_out' THEN 'transfer' ELSE e.kind END,
         pg_catalog.jsonb_build_object('entry_id', e.entry_id)
    FROM credits.entries AS e WHERE e.tenant_id = p_tenant AND e.idem_key = p_idem_key AND e.leg = 0
  UNION ALL
  SELECT 'hold', pg_catalog.jsonb_build_object('hold_id', h.hold_id)
    FROM credits.holds AS h WHERE h.tenant_id = p_tenant AND h.idem_key = p_idem_key
  UNION ALL
  SELECT 'key', pg_catalog.jsonb_build_object('key_id', k.key_id)
    FROM auth.keys AS k WHERE k.tenant_id = p_tenant AND k.idem_key = p_idem_key
$$;

CREATE OR REPLACE FUNCTION credits._other_use_problem(p_idem_key text, p_used_by text, p_facts jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT ops._problem('SX005',
    pg_catalog.format('idempotency key %L was already used for another operation (%s)', p_idem_key, p_used_by),
    p_facts || pg_catalog.jsonb_build_object('operation', p_used_by))
$$;

CREATE OR REPLACE FUNCTION credits._claim_idem_key(p_tenant text, p_idem_key text, p_op text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_op      text;
  v_facts   jsonb;
  v_problem jsonb := credits._dist_key_problem(p_idem_key);
BEGIN
  IF v_problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_problem);
  END IF;
  PERFORM pg_advisory_xact_lock(credits._idem_lock_key(p_tenant, p_idem_key));
  -- A fresh snapshot (this is a new statement): it sees a call with this key that committed while we waited.
  SELECT u.op, u.facts INTO v_op, v_facts FROM credits._idem_key_uses(p_tenant, p_idem_key) AS u LIMIT 1;
  IF v_op IS NOT NULL AND v_op <> p_op THEN
    PERFORM ops._fail_problem(credits._other_use_problem(p_idem_key, v_op, v_facts));
  END IF;
END
$$;
