-- Grant (top-up): add credits to an account. Frozen accounts may receive
-- credits; closed ones may not.
CREATE OR REPLACE FUNCTION credits.grant_credits(
  p_tenant text, p_account bigint, p_amount bigint, p_idem_key text, p_reason text DEFAULT NULL,
  OUT entry_id bigint, OUT account_id bigint, OUT amount bigint, OUT balance_after bigint,
  OUT seq bigint, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e         credits.entries;
  v_problem jsonb;
BEGIN
  v_problem := coalesce(credits._movement_problem(p_amount, p_idem_key, p_reason),
                        credits._idem_key_claim(p_tenant, p_idem_key));
  IF v_problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_problem);
  END IF;
  account_id := p_account; amount := p_amount; replayed := false;
  -- The guard keeps the balance representable; the row lock orders entries.
  UPDATE credits.accounts a
     SET balance = a.balance + p_amount, entry_seq = a.entry_seq + 1
   WHERE a.account_id = p_account AND a.tenant_id = p_tenant AND a.status <> 'closed'
     AND a.balance <= 9223372036854775807 - p_amount
     AND NOT EXISTS (SELECT FROM credits._idem_key_kept(p_tenant, p_idem_key))  -- as in consume.sql
  RETURNING a.balance, a.entry_seq INTO balance_after, seq;
  IF FOUND THEN
    INSERT INTO credits.entries AS x (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key)
    VALUES (p_account, p_tenant, seq, 'grant', p_amount, balance_after, p_reason, p_idem_key)
    ON CONFLICT ON CONSTRAINT entries_idem_unique DO NOTHING
    RETURNING x.entry_id, x.created_at INTO entry_id, created_at;
    IF FOUND THEN
      RETURN;
    END IF;
    -- An entry has the key: take our credit back, then answer below.
    UPDATE credits.accounts a SET balance = a.balance - p_amount, entry_seq = a.entry_seq - 1
     WHERE a.account_id = p_account;
  END IF;
  e := credits._replayed_entry(p_tenant, p_idem_key, 'grant', p_account, p_amount, p_reason, NULL);
  IF e.entry_id IS NULL THEN
    PERFORM ops._fail_problem(credits._idem_key_problem(p_tenant, p_idem_key, 'grant'));
    PERFORM credits._credit_refused(p_tenant, p_account, p_amount);
  END IF;
  entry_id := e.entry_id; balance_after := e.balance_after; seq := e.seq;
  created_at := e.created_at; replayed := true;
END
$$;
COMMENT ON FUNCTION credits.grant_credits(text, bigint, bigint, text, text) IS
  'Credit p_amount to an account (open or frozen, not closed), idempotent by p_idem_key. Returns the journal '
  'entry and the balance after; SX003 invalid amount, SX002 unknown account, SX008 closed, SX010 balance limit, '
  'SX005 key reused with other arguments.';
