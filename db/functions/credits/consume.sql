-- Consume: debit an account. One guarded UPDATE decides (never read-then-write):
-- it matches only an open account of this tenant with enough available credits.
CREATE OR REPLACE FUNCTION credits.consume(
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
  -- The arguments, then the key's claim (credits/idempotency.sql): one
  -- assignment, evaluated directly (PERFORM would run a query).
  v_problem := coalesce(credits._movement_problem(p_amount, p_idem_key, p_reason),
                        credits._idem_key_claim(p_tenant, p_idem_key));
  IF v_problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_problem);
  END IF;
  account_id := p_account; amount := -p_amount; replayed := false;
  UPDATE credits.accounts a
     SET balance = a.balance - p_amount, entry_seq = a.entry_seq + 1
   WHERE a.account_id = p_account AND a.tenant_id = p_tenant AND a.status = 'open'
     AND a.balance - a.held >= p_amount
     AND NOT EXISTS (SELECT FROM credits._idem_key_kept(p_tenant, p_idem_key))  -- not an account's, hold's or API key's
  RETURNING a.balance, a.entry_seq INTO balance_after, seq;
  IF FOUND THEN
    -- The journal's unique key answers whether an entry has the key already
    -- (the claim's lock keeps any other call with it waiting until we commit).
    INSERT INTO credits.entries AS x (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key)
    VALUES (p_account, p_tenant, seq, 'consume', -p_amount, balance_after, p_reason, p_idem_key)
    ON CONFLICT ON CONSTRAINT entries_idem_unique DO NOTHING
    RETURNING x.entry_id, x.created_at INTO entry_id, created_at;
    IF FOUND THEN
      RETURN;
    END IF;
    -- It has: take our debit back (we still hold the row's lock), then answer below.
    UPDATE credits.accounts a SET balance = a.balance + p_amount, entry_seq = a.entry_seq - 1
     WHERE a.account_id = p_account;
  END IF;
  -- Nothing applied: a replay (which must answer as before even if the funds
  -- are gone by now), the key of another operation, or a refusal.
  e := credits._replayed_entry(p_tenant, p_idem_key, 'consume', p_account, -p_amount, p_reason, NULL);
  IF e.entry_id IS NULL THEN
    PERFORM ops._fail_problem(credits._idem_key_problem(p_tenant, p_idem_key, 'consume'));
    -- Expired holds count in `held` until released: release them now (the
    -- deadline is enforced where it is used, not by the job) and try again.
    -- The second try finds nothing more to release, so this recurses once.
    IF credits._release_expired_holds(p_account) > 0 THEN
      SELECT c.entry_id, c.balance_after, c.seq, c.created_at, c.replayed
        INTO entry_id, balance_after, seq, created_at, replayed
        FROM credits.consume(p_tenant, p_account, p_amount, p_idem_key, p_reason) c;
      RETURN;
    END IF;
    PERFORM credits._debit_refused(p_tenant, p_account, p_amount);
  END IF;
  entry_id := e.entry_id; balance_after := e.balance_after; seq := e.seq;
  created_at := e.created_at; replayed := true;
END
$$;
COMMENT ON FUNCTION credits.consume(text, bigint, bigint, text, text) IS
  'Debit p_amount from an open account of the tenant when enough is available, idempotent by p_idem_key. Returns '
  'the journal entry and the balance after; SX003 invalid amount, SX002 unknown account, SX008 not open, SX004 '
  'insufficient funds, SX005 key reused with other arguments.';
