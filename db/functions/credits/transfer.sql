-- A transfer's arguments, as a value (NULL when fine).
CREATE OR REPLACE FUNCTION credits._transfer_problem(p_from bigint, p_to bigint, p_amount bigint, p_idem_key text,
                                                     p_reason text)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(credits._movement_problem(p_amount, p_idem_key, p_reason),
    CASE WHEN p_from IS NULL OR p_to IS NULL THEN
           ops._problem('SX007', 'both accounts are required', pg_catalog.jsonb_build_object('argument', 'account'))
         WHEN p_from = p_to THEN
           ops._problem('SX009', pg_catalog.format('cannot transfer from account %s to itself', p_from),
                        pg_catalog.jsonb_build_object('account_id', p_from))
    END)
$$;

-- Transfer between two accounts of one tenant. Both rows are locked in
-- account_id order, whichever direction the money goes, so two transfers in
-- opposite directions can never deadlock. Both guards are single UPDATEs.
CREATE OR REPLACE FUNCTION credits.transfer(
  p_tenant text, p_from bigint, p_to bigint, p_amount bigint, p_idem_key text, p_reason text DEFAULT NULL,
  OUT debit_entry_id bigint, OUT credit_entry_id bigint, OUT from_account bigint, OUT to_account bigint,
  OUT amount bigint, OUT from_balance_after bigint, OUT to_balance_after bigint,
  OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_debited  boolean := false;
  v_credited boolean := false;
  v_from_seq bigint;
  v_to_seq   bigint;
  e          credits.entries;
  v_problem  jsonb;
BEGIN
  v_problem := coalesce(credits._transfer_problem(p_from, p_to, p_amount, p_idem_key, p_reason),
                        credits._idem_key_claim(p_tenant, p_idem_key));
  IF v_problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_problem);
  END IF;
  from_account := p_from; to_account := p_to; amount := p_amount; replayed := false;

  -- Whichever account comes first, its UPDATE also checks that the key is new
  -- (found nowhere: see credits/idempotency.sql); the second runs only if the
  -- first matched.
  IF p_from < p_to THEN
    UPDATE credits.accounts a SET balance = a.balance - p_amount, entry_seq = a.entry_seq + 1
     WHERE a.account_id = p_from AND a.tenant_id = p_tenant AND a.status = 'open' AND a.balance - a.held >= p_amount
       AND NOT EXISTS (SELECT FROM credits._idem_key_uses(p_tenant, p_idem_key))
    RETURNING a.balance, a.entry_seq INTO from_balance_after, v_from_seq;
    v_debited := FOUND;
    IF v_debited THEN
      UPDATE credits.accounts a SET balance = a.balance + p_amount, entry_seq = a.entry_seq + 1
       WHERE a.account_id = p_to AND a.tenant_id = p_tenant AND a.status <> 'closed'
         AND a.balance <= 9223372036854775807 - p_amount
      RETURNING a.balance, a.entry_seq INTO to_balance_after, v_to_seq;
      v_credited := FOUND;
    END IF;
  ELSE
    UPDATE credits.accounts a SET balance = a.balance + p_amount, entry_seq = a.entry_seq + 1
     WHERE a.account_id = p_to AND a.tenant_id = p_tenant AND a.status <> 'closed'
       AND a.balance <= 9223372036854775807 - p_amount
       AND NOT EXISTS (SELECT FROM credits._idem_key_uses(p_tenant, p_idem_key))
    RETURNING a.balance, a.entry_seq INTO to_balance_after, v_to_seq;
    v_credited := FOUND;
    IF v_credited THEN
      UPDATE credits.accounts a SET balance = a.balance - p_amount, entry_seq = a.entry_seq + 1
       WHERE a.account_id = p_from AND a.tenant_id = p_tenant AND a.status = 'open'
         AND a.balance - a.held >= p_amount
      RETURNING a.balance, a.entry_seq INTO from_balance_after, v_from_seq;
      v_debited := FOUND;
    END IF;
  END IF;

  IF v_debited AND v_credited THEN
    -- The key is new and ours until commit (the claim's lock): a plain INSERT.
    WITH ins AS (
      INSERT INTO credits.entries AS x
        (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key, leg, counterparty)
      VALUES (p_from, p_tenant, v_from_seq, 'transfer_out', -p_amount, from_balance_after, p_reason, p_idem_key, 0, p_to),
             (p_to,   p_tenant, v_to_seq,   'transfer_in',   p_amount, to_balance_after,   p_reason, p_idem_key, 1, p_from)
      RETURNING x.leg, x.entry_id, x.created_at)
    SELECT max(ins.entry_id) FILTER (WHERE leg = 0), max(ins.entry_id) FILTER (WHERE leg = 1), max(ins.created_at)
      INTO debit_entry_id, credit_entry_id, created_at FROM ins;
    RETURN;
  END IF;

  -- Not applied: undo whatever half moved (we still hold the locks) ...
  IF v_debited THEN
    UPDATE credits.accounts a SET balance = a.balance + p_amount, entry_seq = a.entry_seq - 1 WHERE a.account_id = p_from;
  END IF;
  IF v_credited THEN
    UPDATE credits.accounts a SET balance = a.balance - p_amount, entry_seq = a.entry_seq - 1 WHERE a.account_id = p_to;
  END IF;
  -- ... then answer as a replay, or say which side refused.
  e := credits._replayed_entry(p_tenant, p_idem_key, 'transfer_out', p_from, -p_amount, p_reason, p_to);
  IF e.entry_id IS NULL THEN
    PERFORM ops._fail_problem(credits._idem_key_problem(p_tenant, p_idem_key, 'transfer'));
    IF (p_from < p_to AND NOT v_debited) OR (p_from > p_to AND v_credited) THEN
      -- Expired holds still counted in `held`: release them and try once more
      -- (see consume.sql).
      IF credits._release_expired_holds(p_from) > 0 THEN
        SELECT t.debit_entry_id, t.credit_entry_id, t.from_balance_after, t.to_balance_after, t.created_at,
               t.replayed
          INTO debit_entry_id, credit_entry_id, from_balance_after, to_balance_after, created_at, replayed
          FROM credits.transfer(p_tenant, p_from, p_to, p_amount, p_idem_key, p_reason) t;
        RETURN;
      END IF;
      PERFORM credits._debit_refused(p_tenant, p_from, p_amount);
    ELSE
      PERFORM credits._credit_refused(p_tenant, p_to, p_amount);
    END IF;
  END IF;
  debit_entry_id := e.entry_id; from_balance_after := e.balance_after; created_at := e.created_at;
  SELECT x.entry_id, x.balance_after INTO credit_entry_id, to_balance_after
    FROM credits.entries x WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key AND x.leg = 1;
  replayed := true;
END
$$;
COMMENT ON FUNCTION credits.transfer(text, bigint, bigint, bigint, text, text) IS
  'Move p_amount between two accounts of one tenant, idempotent by p_idem_key (rows locked in account_id order: '
  'no deadlock). Returns both entries and balances; SX009 same account, SX004 insufficient funds, SX008 not open, '
  'SX002 unknown account, SX005 key reused.';
