-- Reservations (holds): reserve (prepare) -> commit (capture) | abort (void),
-- or expiry. An active hold counts in accounts.held, so the guard every debit
-- uses (balance - held >= amount) sees it at once. A hold resolves at most
-- once: every resolution is an UPDATE guarded by status = 'active', and the
-- trigger below refuses any other transition whoever attempts it.
-- Lock order everywhere: the account row(s) first, then the hold rows (and
-- whatever their triggers lock, e.g. the audit chains). A call never waits
-- for an account while holding a hold or an audit chain head, so a chain
-- shared by holds of different accounts cannot close a deadlock cycle.

-- The state machine, enforced on the table itself: a final hold never
-- changes again, identity columns never change, a capture needs an unexpired
-- hold, and the deadline may only be pinned later by a distributed commit.
CREATE OR REPLACE FUNCTION credits._hold_transition_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF OLD.status <> 'active' THEN
    RAISE EXCEPTION 'hold % is % and can change no more', OLD.hold_id, OLD.status USING ERRCODE = 'check_violation';
  END IF;
  IF (NEW.hold_id, NEW.tenant_id, NEW.account_id, NEW.amount, NEW.idem_key, NEW.created_at, NEW.dist_tx_id)
     IS DISTINCT FROM (OLD.hold_id, OLD.tenant_id, OLD.account_id, OLD.amount, OLD.idem_key, OLD.created_at, OLD.dist_tx_id) THEN
    RAISE EXCEPTION 'hold % identity columns are immutable', OLD.hold_id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status = 'captured' AND OLD.expires_at <= now() THEN
    RAISE EXCEPTION 'hold % expired at %, cannot be captured', OLD.hold_id, OLD.expires_at USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.expires_at <> OLD.expires_at AND (NEW.expires_at < OLD.expires_at OR OLD.expires_at <= now()
                                           OR OLD.dist_tx_id IS NULL) THEN
    RAISE EXCEPTION 'hold % deadline may only be extended, before it passes, by its distributed transaction',
      OLD.hold_id USING ERRCODE = 'check_violation';
  END IF;
  RAISE EXCEPTION 'hold %: illegal update', OLD.hold_id USING ERRCODE = 'check_violation';
END
$$;

-- The WHEN clause is the rule (evaluated without calling PL/pgSQL, so legal
-- updates pay almost nothing); the function only explains the refusal.
CREATE OR REPLACE TRIGGER holds_transition_guard
  BEFORE UPDATE ON credits.holds
  FOR EACH ROW
  WHEN (OLD.status <> 'active'
        OR (NEW.hold_id, NEW.tenant_id, NEW.account_id, NEW.amount, NEW.idem_key, NEW.created_at, NEW.dist_tx_id)
           IS DISTINCT FROM (OLD.hold_id, OLD.tenant_id, OLD.account_id, OLD.amount, OLD.idem_key, OLD.created_at,
                             OLD.dist_tx_id)
        OR (NEW.status = 'captured' AND OLD.expires_at <= now())
        OR (NEW.expires_at <> OLD.expires_at
            AND (NEW.expires_at < OLD.expires_at OR OLD.expires_at <= now() OR OLD.dist_tx_id IS NULL)))
  EXECUTE FUNCTION credits._hold_transition_guard();
ALTER TABLE credits.holds ENABLE ALWAYS TRIGGER holds_transition_guard;
CREATE OR REPLACE TRIGGER holds_no_delete
  BEFORE DELETE ON credits.holds
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
ALTER TABLE credits.holds ENABLE ALWAYS TRIGGER holds_no_delete;
CREATE OR REPLACE TRIGGER holds_no_truncate
  BEFORE TRUNCATE ON credits.holds
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
ALTER TABLE credits.holds ENABLE ALWAYS TRIGGER holds_no_truncate;

-- Arguments of a reservation beyond those of any movement.
CREATE OR REPLACE FUNCTION credits._ttl_problem(p_argument text, p_ttl interval)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN p_ttl IS NULL OR p_ttl <= interval '0' OR p_ttl > interval '30 days' THEN
    ops._problem('SX106', pg_catalog.format('%s must be more than 0 and at most 30 days, got %s', p_argument,
                                            coalesce(p_ttl::text, 'NULL')),
                 pg_catalog.jsonb_build_object('argument', p_argument, 'value', p_ttl::text))
  END
$$;

CREATE OR REPLACE FUNCTION credits._check_ttl(p_argument text, p_ttl interval)
RETURNS void
LANGUAGE sql STABLE
AS $$
  SELECT ops._fail_problem(credits._ttl_problem(p_argument, p_ttl))
$$;

-- Everything a reservation's arguments must satisfy, as a value.
CREATE OR REPLACE FUNCTION credits._reserve_problem(p_amount bigint, p_idem_key text, p_reason text, p_ttl interval)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(credits._movement_problem(p_amount, p_idem_key, p_reason), credits._ttl_problem('ttl', p_ttl),
                  credits._dist_key_problem(p_idem_key))
$$;

-- A replayed reservation: the hold this tenant's key made, if the arguments
-- match (else a problem, SX005). The TTL is not compared: a retry comes later
-- anyway. _replayed_hold raises the problem.
CREATE OR REPLACE FUNCTION credits._hold_replay(
  p_tenant text, p_idem_key text, p_account bigint, p_amount bigint, p_reason text,
  OUT h credits.holds, OUT problem jsonb)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  SELECT * INTO h FROM credits.holds x WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key;
  IF FOUND AND (h.account_id <> p_account OR h.amount <> p_amount OR h.reason IS DISTINCT FROM p_reason) THEN
    problem := ops._problem('SX005',
      format('idempotency key %L was used for a hold of %s on account %s', p_idem_key, h.amount, h.account_id),
      jsonb_build_object('hold_id', h.hold_id));
    h := NULL;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION credits._replayed_hold(
  p_tenant text, p_idem_key text, p_account bigint, p_amount bigint, p_reason text)
RETURNS credits.holds
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_r record;
BEGIN
  SELECT r.* INTO v_r
    FROM credits._hold_replay(p_tenant, p_idem_key, p_account, p_amount, p_reason) r;
  IF v_r.problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_r.problem);
  END IF;
  RETURN v_r.h;
END
$$;

-- Reserve (prepare): hold p_amount of an open account for p_ttl.
CREATE OR REPLACE FUNCTION credits.reserve(
  p_tenant text, p_account bigint, p_amount bigint, p_idem_key text,
  p_ttl interval DEFAULT interval '5 minutes', p_reason text DEFAULT NULL,
  OUT hold_id bigint, OUT account_id bigint, OUT amount bigint, OUT status text,
  OUT expires_at timestamptz, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  h       credits.holds;
  ok      boolean;
  problem jsonb;
BEGIN
  problem := credits._reserve_problem(p_amount, p_idem_key, p_reason, p_ttl);
  IF problem IS NOT NULL THEN
    PERFORM ops._fail_problem(problem);
  END IF;
  PERFORM credits._claim_idem_key(p_tenant, p_idem_key, 'hold');
  UPDATE credits.accounts a SET held = a.held + p_amount
   WHERE a.account_id = p_account AND a.tenant_id = p_tenant AND a.status = 'open'
     AND a.balance - a.held >= p_amount;
  ok := FOUND;
  IF NOT ok THEN
    -- A replay must answer as before even if the funds are gone by now.
    h := credits._replayed_hold(p_tenant, p_idem_key, p_account, p_amount, p_reason);
    IF h.hold_id IS NULL THEN
      -- Expired holds may still count in held: return their funds, try once more
      -- (only for this tenant's open account that has holds at all).
      PERFORM 1 FROM credits.accounts a
       WHERE a.account_id = p_account AND a.tenant_id = p_tenant AND a.status = 'open' AND a.held > 0;
      IF FOUND THEN
        IF credits._release_expired_holds(p_account) > 0 THEN
          UPDATE credits.accounts a SET held = a.held + p_amount
           WHERE a.account_id = p_account AND a.tenant_id = p_tenant AND a.status = 'open'
             AND a.balance - a.held >= p_amount;
          ok := FOUND;
        END IF;
      END IF;
      IF NOT ok THEN
        PERFORM credits._debit_refused(p_tenant, p_account, p_amount);
      END IF;
    END IF;
  END IF;
  IF ok THEN
    INSERT INTO credits.holds AS x (tenant_id, account_id, amount, reason, idem_key, expires_at)
    VALUES (p_tenant, p_account, p_amount, p_reason, p_idem_key, now() + p_ttl)
    ON CONFLICT ON CONSTRAINT holds_idem_unique DO NOTHING
    RETURNING x.* INTO h;
    IF FOUND THEN
      hold_id := h.hold_id; account_id := h.account_id; amount := h.amount; status := h.status;
      expires_at := h.expires_at; created_at := h.created_at; replayed := false;
      RETURN;
    END IF;
    -- Key already used (perhaps by a call that committed while we waited):
    -- undo our hold under the lock we hold and answer as a replay.
    UPDATE credits.accounts a SET held = a.held - p_amount WHERE a.account_id = p_account;
    h := credits._replayed_hold(p_tenant, p_idem_key, p_account, p_amount, p_reason);
  END IF;
  hold_id := h.hold_id; account_id := h.account_id; amount := h.amount; status := h.status;
  expires_at := h.expires_at; created_at := h.created_at; replayed := true;
END
$$;
COMMENT ON FUNCTION credits.reserve(text, bigint, bigint, text, interval, text) IS
  'Hold p_amount of an open account for p_ttl (default 5 minutes), idempotent by p_idem_key; the hold counts '
  'against available at once. Returns the hold; SX003 invalid amount, SX106 invalid TTL, SX004 insufficient '
  'funds, SX008 not open, SX005 key reused.';

-- Why a commit or abort matched no active hold: unknown, owned by a
-- distributed transaction, already resolved, expired, or too large a capture.
-- Answers the hold when the call is a replay of the resolution it already
-- had, else the problem; _hold_refused raises the problem.
CREATE OR REPLACE FUNCTION credits._hold_problem(p_tenant text, p_hold bigint, p_op text, p_amount bigint,
  OUT h credits.holds, OUT problem jsonb)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  facts jsonb;
BEGIN
  SELECT * INTO h FROM credits.holds x WHERE x.hold_id = p_hold AND x.tenant_id = p_tenant;
  IF NOT FOUND THEN
    problem := ops._problem('SX101', format('hold %s not found', p_hold), jsonb_build_object('hold_id', p_hold));
    RETURN;
  END IF;
  facts := jsonb_build_object('hold_id', h.hold_id, 'status', h.status);
  IF h.dist_tx_id IS NOT NULL THEN
    problem := ops._problem('SX113',
      format('hold %s is a leg of a distributed transaction; resolve the transaction', p_hold),
      facts || jsonb_build_object('dist_tx_id', h.dist_tx_id));
  ELSIF h.status = 'captured' THEN
    IF p_op = 'commit' THEN
      IF p_amount IS NULL OR p_amount = h.captured THEN
        RETURN;
      END IF;
      problem := ops._problem('SX005', format('hold %s was already committed for %s', p_hold, h.captured),
                              facts || jsonb_build_object('captured', h.captured));
    ELSE
      problem := ops._problem('SX103', format('hold %s was committed; it cannot be aborted', p_hold),
                              facts || jsonb_build_object('captured', h.captured));
    END IF;
  ELSIF h.status = 'voided' THEN
    IF p_op = 'abort' THEN
      RETURN;
    END IF;
    problem := ops._problem('SX102', format('hold %s was aborted; it cannot be committed', p_hold), facts);
  ELSIF h.status = 'expired' OR h.expires_at <= now() THEN
    problem := ops._problem('SX104', format('hold %s expired at %s', p_hold, h.expires_at),
                            facts || jsonb_build_object('expires_at', h.expires_at));
  ELSIF p_op = 'commit' AND p_amount > h.amount THEN
    problem := ops._problem('SX105', format('cannot capture %s from hold %s of %s', p_amount, p_hold, h.amount),
                            facts || jsonb_build_object('amount', h.amount, 'requested', p_amount));
  ELSE
    RAISE EXCEPTION 'hold % refused for no known reason', p_hold USING ERRCODE = 'XX000';
  END IF;
  h := NULL;
END
$$;

CREATE OR REPLACE FUNCTION credits._hold_refused(p_tenant text, p_hold bigint, p_op text, p_amount bigint)
RETURNS credits.holds
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_r record;
BEGIN
  SELECT r.* INTO v_r FROM credits._hold_problem(p_tenant, p_hold, p_op, p_amount) r;
  IF v_r.problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_r.problem);
  END IF;
  RETURN v_r.h;
END
$$;

-- A commit's own arguments, as a value.
CREATE OR REPLACE FUNCTION credits._commit_problem(p_amount bigint, p_reason text)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN p_amount IS NOT NULL AND (p_amount < 1 OR p_amount > 1000000000000000) THEN
      ops._problem('SX003', pg_catalog.format('amount must be between 1 and 10^15, got %s', p_amount),
                   pg_catalog.jsonb_build_object('amount', p_amount))
    WHEN pg_catalog.length(p_reason) > 500 THEN
      ops._problem('SX007', 'reason must be at most 500 characters',
                   pg_catalog.jsonb_build_object('argument', 'reason'))
  END
$$;

-- Commit (capture) all of a hold or part of it (the rest is released), and
-- journal the debit as a 'capture' entry (leg 2, keyed by the hold's key).
-- The hold is the idempotency key: committing it again answers as before.
-- First the account's row lock (found through the hold, whose account never
-- changes); then the hold's guarded UPDATE, a new statement that sees whatever
-- a concurrent commit/abort did while we waited, decides; then the money.
-- (One joined UPDATE of the account would not do: after waiting for the
-- lock, PostgreSQL re-checks it against the hold row it read before waiting.)
CREATE OR REPLACE FUNCTION credits.commit_hold(
  p_tenant text, p_hold bigint, p_amount bigint DEFAULT NULL, p_reason text DEFAULT NULL,
  OUT hold_id bigint, OUT account_id bigint, OUT amount bigint, OUT captured bigint, OUT released bigint,
  OUT entry_id bigint, OUT balance_after bigint, OUT seq bigint, OUT resolved_at timestamptz,
  OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  h credits.holds;
  e credits.entries;
BEGIN
  PERFORM ops._fail_problem(credits._commit_problem(p_amount, p_reason));
  PERFORM 1 FROM credits.holds x JOIN credits.accounts a ON a.account_id = x.account_id
   WHERE x.hold_id = p_hold AND x.tenant_id = p_tenant
     FOR UPDATE OF a;
  UPDATE credits.holds x SET status = 'captured', captured = coalesce(p_amount, x.amount), resolved_at = now()
   WHERE x.hold_id = p_hold AND x.tenant_id = p_tenant AND x.status = 'active' AND x.expires_at > now()
     AND x.dist_tx_id IS NULL AND coalesce(p_amount, x.amount) <= x.amount
  RETURNING x.* INTO h;
  IF FOUND THEN
    -- held included this hold, so balance >= held >= amount >= captured: no guard needed.
    UPDATE credits.accounts a
       SET balance = a.balance - h.captured, held = a.held - h.amount, entry_seq = a.entry_seq + 1
     WHERE a.account_id = h.account_id
    RETURNING a.balance, a.entry_seq INTO balance_after, seq;
    INSERT INTO credits.entries AS x (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key, leg)
    VALUES (h.account_id, h.tenant_id, commit_hold.seq, 'capture', -h.captured, commit_hold.balance_after,
            coalesce(p_reason, h.reason), h.idem_key, 2)
    ON CONFLICT ON CONSTRAINT entries_idem_unique DO NOTHING
    RETURNING x.entry_id INTO entry_id;
    IF NOT FOUND THEN
      -- The hold row's guard lets a hold be captured once, so its entry
      -- cannot exist yet; if it does, fail the whole call rather than journal twice.
      RAISE EXCEPTION 'capture entry of hold % already exists', p_hold USING ERRCODE = 'XX000';
    END IF;
    replayed := false;
  ELSE
    h := credits._hold_refused(p_tenant, p_hold, 'commit', p_amount);
    SELECT * INTO e FROM credits.entries x WHERE x.tenant_id = h.tenant_id AND x.idem_key = h.idem_key AND x.leg = 2;
    entry_id := e.entry_id; balance_after := e.balance_after; seq := e.seq; replayed := true;
  END IF;
  hold_id := h.hold_id; account_id := h.account_id; amount := h.amount; captured := h.captured;
  released := h.amount - h.captured; resolved_at := h.resolved_at;
END
$$;
COMMENT ON FUNCTION credits.commit_hold(text, bigint, bigint, text) IS
  'Capture a hold, all of it or p_amount (the rest is released), and journal the debit; committing again answers '
  'as before. Returns the capture and balance after; SX101 unknown hold, SX102 aborted, SX104 expired, SX105 '
  'capture exceeds the hold, SX113 owned by a distributed transaction.';

-- The money side of a capture whose hold row was just marked captured (and
-- is locked by us): debit the balance, drop the whole hold from held, bump
-- entry_seq in the same UPDATE, and journal it. No guard is needed on the
-- account: held included this hold, so balance >= held >= amount >= captured.
CREATE OR REPLACE FUNCTION credits._capture_entry(h credits.holds, p_reason text)
RETURNS credits.entries
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_balance bigint;
  v_seq     bigint;
  e         credits.entries;
BEGIN
  UPDATE credits.accounts a
     SET balance = a.balance - h.captured, held = a.held - h.amount, entry_seq = a.entry_seq + 1
   WHERE a.account_id = h.account_id
  RETURNING a.balance, a.entry_seq INTO v_balance, v_seq;
  INSERT INTO credits.entries AS x (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key, leg)
  VALUES (h.account_id, h.tenant_id, v_seq, 'capture', -h.captured, v_balance, p_reason, h.idem_key, 2)
  ON CONFLICT ON CONSTRAINT entries_idem_unique DO NOTHING
  RETURNING x.* INTO e;
  IF NOT FOUND THEN
    -- The hold row's guard lets a hold be captured once, so its entry cannot
    -- exist yet; if it does, fail the whole call (undoing the debit and the
    -- hold's transition) rather than journal twice.
    RAISE EXCEPTION 'capture entry of hold % already exists', h.hold_id USING ERRCODE = 'XX000';
  END IF;
  RETURN e;
END
$$;

-- Abort (void): release the whole hold. Aborting it again answers as before.
-- Same order as commit: the account's lock, then the hold's guard.
CREATE OR REPLACE FUNCTION credits.abort_hold(
  p_tenant text, p_hold bigint,
  OUT hold_id bigint, OUT account_id bigint, OUT amount bigint, OUT status text,
  OUT resolved_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  h credits.holds;
BEGIN
  PERFORM 1 FROM credits.holds x JOIN credits.accounts a ON a.account_id = x.account_id
   WHERE x.hold_id = p_hold AND x.tenant_id = p_tenant
     FOR UPDATE OF a;
  UPDATE credits.holds x SET status = 'voided', resolved_at = now()
   WHERE x.hold_id = p_hold AND x.tenant_id = p_tenant AND x.status = 'active' AND x.expires_at > now()
     AND x.dist_tx_id IS NULL
  RETURNING x.* INTO h;
  IF FOUND THEN
    UPDATE credits.accounts a SET held = a.held - h.amount WHERE a.account_id = h.account_id;
    replayed := false;
  ELSE
    h := credits._hold_refused(p_tenant, p_hold, 'abort', NULL);
    replayed := true;
  END IF;
  hold_id := h.hold_id; account_id := h.account_id; amount := h.amount; status := h.status;
  resolved_at := h.resolved_at;
END
$$;
COMMENT ON FUNCTION credits.abort_hold(text, bigint) IS
  'Release a whole hold; aborting again answers as before. Returns the hold; SX101 unknown hold, SX103 already '
  'committed, SX113 owned by a distributed transaction.';

-- Audited writes: a hold's audit entries are chained per account
-- (audit._log_row_keyed), ordered by the account row lock every hold writer
-- takes first, so writers of different accounts never share a chain. The
-- distributed tables still use shared chain heads (audit._log_row), locked
-- until commit; two transactions taking two heads in opposite orders could
-- deadlock, so distributed-transaction calls hold credits._dist_serialize()'s
-- lock exclusively and the multi-hold writers here hold it shared: the two
-- kinds never interleave.

CREATE OR REPLACE FUNCTION credits._dist_lock_key()
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT 7315001::bigint $$;
