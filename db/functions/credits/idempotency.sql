-- Idempotency: a key names one call per tenant. The answering entry (leg 0)
-- records the call's arguments, so a replay is recognised, and a key reused
-- with other arguments is refused, without any extra table or write.
CREATE OR REPLACE FUNCTION credits._replayed_entry(
  p_tenant text, p_idem_key text, p_kind text, p_account bigint, p_amount bigint,
  p_reason text, p_counterparty bigint)
RETURNS credits.entries
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  e credits.entries;
BEGIN
  SELECT * INTO e FROM credits.entries
   WHERE tenant_id = p_tenant AND idem_key = p_idem_key AND leg = 0;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF e.kind <> p_kind OR e.account_id <> p_account OR e.amount <> p_amount
     OR e.reason IS DISTINCT FROM p_reason OR e.counterparty IS DISTINCT FROM p_counterparty THEN
    PERFORM ops._fail('SX005',
      format('idempotency key %L was used for a %s of %s on account %s', p_idem_key, e.kind, abs(e.amount), e.account_id),
      jsonb_build_object('entry_id', e.entry_id));
  END IF;
  RETURN e;
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
CREATE OR REPLACE FUNCTION credits._claim_idem_key(p_tenant text, p_idem_key text, p_op text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_op    text;
  v_facts jsonb;
BEGIN
  IF left(p_idem_key, 5) = 'dist:' THEN
    PERFORM ops._fail('SX007', 'idempotency keys starting with "dist:" are reserved',
                      jsonb_build_object('argument', 'idempotency_key'));
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('shieldx.idem:' || coalesce(p_tenant, '') || ':' || p_idem_key, 0));
  -- A fresh snapshot (this is a new statement): it sees a call with this key that committed while we waited.
  SELECT u.op, u.facts INTO v_op, v_facts FROM (
    SELECT 'account' AS op, jsonb_build_object('account_id', a.account_id) AS facts
      FROM credits.accounts a WHERE a.tenant_id = p_tenant AND a.idem_key = p_idem_key
    UNION ALL
    SELECT CASE e.kind WHEN 'transfer_out' THEN 'transfer' ELSE e.kind END, jsonb_build_object('entry_id', e.entry_id)
      FROM credits.entries e WHERE e.tenant_id = p_tenant AND e.idem_key = p_idem_key AND e.leg = 0
    UNION ALL
    SELECT 'hold', jsonb_build_object('hold_id', h.hold_id)
      FROM credits.holds h WHERE h.tenant_id = p_tenant AND h.idem_key = p_idem_key
    UNION ALL
    SELECT 'key', jsonb_build_object('key_id', k.key_id)
      FROM auth.keys k WHERE k.tenant_id = p_tenant AND k.idem_key = p_idem_key
  ) u LIMIT 1;
  IF v_op IS NOT NULL AND v_op <> p_op THEN
    PERFORM ops._fail('SX005', format('idempotency key %L was already used for another operation (%s)', p_idem_key, v_op),
                      v_facts || jsonb_build_object('operation', v_op));
  END IF;
END
$$;
