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
