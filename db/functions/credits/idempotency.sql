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
