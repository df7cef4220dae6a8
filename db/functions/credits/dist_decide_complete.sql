-- Distributed transactions, decide and complete (the overview is in dist_state.sql).

-- Log a decision (the row is locked by the caller). Commit needs every vote
-- yes and the deadline not passed, and pins the legs' holds (deadline
-- 'infinity'): once commit is logged, no expiry can take a leg away.
CREATE OR REPLACE FUNCTION credits._dist_decide(t credits.dist_transactions, p_decision text, p_reason text)
RETURNS credits.dist_transactions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_debits int;
  v_pinned int;
BEGIN
  IF p_decision = 'commit' THEN
    IF t.deadline <= now() THEN
      PERFORM ops._fail('SX111', format('distributed transaction %L passed its deadline %s undecided', t.xid, t.deadline),
                        jsonb_build_object('xid', t.xid, 'deadline', t.deadline));
    END IF;
    IF t.state <> 'prepared' THEN
      PERFORM ops._fail('SX110', format('distributed transaction %L is %s, not prepared', t.xid, t.state),
                        jsonb_build_object('xid', t.xid, 'state', t.state));
    END IF;
    UPDATE credits.holds h SET expires_at = 'infinity'
     WHERE h.dist_tx_id = t.dist_tx_id AND h.status = 'active' AND h.expires_at > now();
    GET DIAGNOSTICS v_pinned = ROW_COUNT;
    SELECT count(*) INTO v_debits FROM credits.dist_participants x WHERE x.dist_tx_id = t.dist_tx_id AND x.amount < 0;
    IF v_pinned <> v_debits THEN  -- a leg's hold is gone: too late to commit
      PERFORM ops._fail('SX111', format('distributed transaction %L: a leg''s hold has expired', t.xid),
                        jsonb_build_object('xid', t.xid, 'deadline', t.deadline));
    END IF;
  END IF;
  UPDATE credits.dist_transactions x
     SET decision = p_decision, state = CASE p_decision WHEN 'commit' THEN 'committing' ELSE 'aborting' END,
         decided_at = now(), reason = p_reason
   WHERE x.dist_tx_id = t.dist_tx_id
  RETURNING x.* INTO t;
  PERFORM credits._dist_event(t.dist_tx_id, NULL, 'decided_' || p_decision, jsonb_build_object('reason', p_reason));
  RETURN t;
END
$$;

-- Apply the logged decision to every leg not yet done (so it can be rerun
-- after a crash), then mark the transaction final.
CREATE OR REPLACE FUNCTION credits._dist_complete(t credits.dist_transactions)
RETURNS credits.dist_transactions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  p credits.dist_participants;
  h credits.holds;
  e credits.entries;
  v_balance bigint;
  v_seq bigint;
BEGIN
  IF t.decision IS NULL THEN
    PERFORM ops._fail('SX110', format('distributed transaction %L has no decision yet', t.xid),
                      jsonb_build_object('xid', t.xid, 'state', t.state));
  END IF;
  FOR p IN SELECT * FROM credits.dist_participants x WHERE x.dist_tx_id = t.dist_tx_id AND x.outcome IS NULL
            ORDER BY x.account_id LOOP
    e := NULL;
    IF t.decision = 'commit' THEN
      IF p.amount < 0 THEN
        UPDATE credits.holds x SET status = 'captured', captured = x.amount, resolved_at = now()
         WHERE x.hold_id = p.hold_id AND x.status = 'active'
        RETURNING x.* INTO h;
        IF NOT FOUND THEN  -- pinned at the decision: cannot happen
          RAISE EXCEPTION 'hold % of committed transaction % is not active', p.hold_id, t.xid USING ERRCODE = 'XX000';
        END IF;
        e := credits._capture_entry(h, h.reason);
      ELSE
        UPDATE credits.accounts a SET balance = a.balance + p.amount, entry_seq = a.entry_seq + 1
         WHERE a.account_id = p.account_id AND a.tenant_id = p.tenant_id AND a.status <> 'closed'
           AND a.balance <= 9223372036854775807 - p.amount
        RETURNING a.balance, a.entry_seq INTO v_balance, v_seq;
        IF NOT FOUND THEN  -- stays 'committing'; recovery retries and reports
          PERFORM credits._credit_refused(p.tenant_id, p.account_id, p.amount);
        END IF;
        INSERT INTO credits.entries AS x (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key, leg)
        VALUES (p.account_id, p.tenant_id, v_seq, 'dist_credit', p.amount, v_balance,
                left('distributed transaction ' || t.xid, 500), format('dist:%s:%s', t.dist_tx_id, p.leg_no), 3)
        ON CONFLICT ON CONSTRAINT entries_idem_unique DO NOTHING
        RETURNING x.* INTO e;
        IF NOT FOUND THEN  -- the outcome column makes each leg apply once
          RAISE EXCEPTION 'credit leg % of % already journaled', p.leg_no, t.xid USING ERRCODE = 'XX000';
        END IF;
      END IF;
      UPDATE credits.dist_participants x SET outcome = 'committed', entry_id = e.entry_id, completed_at = now()
       WHERE x.dist_tx_id = p.dist_tx_id AND x.leg_no = p.leg_no;
      PERFORM credits._dist_event(t.dist_tx_id, p.leg_no, 'leg_committed', jsonb_build_object('entry_id', e.entry_id));
    ELSE
      IF p.hold_id IS NOT NULL THEN
        UPDATE credits.holds x SET status = 'voided', resolved_at = now()
         WHERE x.hold_id = p.hold_id AND x.status = 'active'
        RETURNING x.* INTO h;
        IF FOUND THEN  -- else it expired already and its funds are back
          UPDATE credits.accounts a SET held = a.held - h.amount WHERE a.account_id = h.account_id;
        END IF;
      END IF;
      UPDATE credits.dist_participants x SET outcome = 'aborted', completed_at = now()
       WHERE x.dist_tx_id = p.dist_tx_id AND x.leg_no = p.leg_no;
      PERFORM credits._dist_event(t.dist_tx_id, p.leg_no, 'leg_aborted', jsonb_build_object('hold_id', p.hold_id));
    END IF;
  END LOOP;
  UPDATE credits.dist_transactions x
     SET state = CASE t.decision WHEN 'commit' THEN 'committed' ELSE 'aborted' END, completed_at = now()
   WHERE x.dist_tx_id = t.dist_tx_id
  RETURNING x.* INTO t;
  PERFORM credits._dist_event(t.dist_tx_id, NULL, t.state);
  RETURN t;
END
$$;

-- Log a decision without applying it (a coordinator that applies legs in a
-- later call). Logging the same decision again is a replay.
CREATE OR REPLACE FUNCTION credits.dist_decide(
  p_xid text, p_decision text,
  OUT xid text, OUT state text, OUT decision text, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
BEGIN
  IF p_decision IS NULL OR p_decision NOT IN ('commit', 'abort') THEN
    PERFORM ops._fail('SX007', 'decision must be commit or abort', jsonb_build_object('argument', 'decision'));
  END IF;
  t := credits._dist_lock(p_xid);
  replayed := t.decision IS NOT NULL;
  IF t.decision IS NULL THEN
    PERFORM credits._dist_lock_accounts(t);
    t := credits._dist_decide(t, p_decision, CASE p_decision WHEN 'commit' THEN 'coordinator decided commit'
                                                 ELSE 'coordinator decided abort' END);
  ELSIF t.decision <> p_decision THEN
    PERFORM credits._dist_decided_otherwise(t);
  END IF;
  xid := t.xid; state := t.state; decision := t.decision;
END
$$;
COMMENT ON FUNCTION credits.dist_decide(text, text) IS
  'Log a decision (''commit'' or ''abort'') for a distributed transaction without applying it; commit needs every '
  'vote yes before the deadline. Logging the same decision again is a replay. SX007 invalid decision, SX110 not '
  'prepared, SX111 timed out, SX108/SX109 decided otherwise.';

CREATE OR REPLACE FUNCTION credits._dist_decided_otherwise(t credits.dist_transactions)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF t.decision = 'commit' THEN
    PERFORM ops._fail('SX109', format('distributed transaction %L was committed', t.xid),
                      jsonb_build_object('xid', t.xid, 'state', t.state));
  END IF;
  PERFORM ops._fail('SX108', format('distributed transaction %L was aborted', t.xid),
                    jsonb_build_object('xid', t.xid, 'state', t.state, 'reason', t.reason));
END
$$;

-- Apply a logged decision (idempotent; what recovery runs too).
CREATE OR REPLACE FUNCTION credits.dist_complete(
  p_xid text, OUT xid text, OUT state text, OUT decision text, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
BEGIN
  t := credits._dist_lock(p_xid);
  replayed := t.state IN ('committed', 'aborted');
  IF NOT replayed THEN
    PERFORM credits._dist_lock_accounts(t);
    t := credits._dist_complete(t);
  END IF;
  xid := t.xid; state := t.state; decision := t.decision;
END
$$;
COMMENT ON FUNCTION credits.dist_complete(text) IS
  'Apply the logged decision of a distributed transaction to every leg not yet done (idempotent; recovery runs it '
  'too). Returns the final state; SX107 unknown, SX110 no decision logged.';

-- Commit or abort: decide and apply it, in one call; a decision already
-- logged the same way makes it a replay, the other way a named error.
-- Abort is allowed until commit is logged, also past the deadline.
CREATE OR REPLACE FUNCTION credits._dist_finish(
  p_xid text, p_decision text, OUT xid text, OUT state text, OUT decision text, OUT replayed boolean)
LANGUAGE plpgsql
AS $$
DECLARE
  t credits.dist_transactions;
  v_final text := CASE p_decision WHEN 'commit' THEN 'committed' ELSE 'aborted' END;
  v_doing text := CASE p_decision WHEN 'commit' THEN 'committing' ELSE 'aborting' END;
BEGIN
  t := credits._dist_lock(p_xid);
  replayed := t.decision IS NOT NULL;
  IF t.decision <> p_decision THEN
    PERFORM credits._dist_decided_otherwise(t);
  END IF;
  IF t.state <> v_final THEN
    PERFORM credits._dist_lock_accounts(t);
  END IF;
  IF t.decision IS NULL THEN
    t := credits._dist_decide(t, p_decision, 'coordinator ' || v_final);
  END IF;
  IF t.state = v_doing THEN
    t := credits._dist_complete(t);
  END IF;
  xid := t.xid; state := t.state; decision := t.decision;
END
$$;

CREATE OR REPLACE FUNCTION credits.dist_commit(
  p_xid text, OUT xid text, OUT state text, OUT decision text, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM credits._dist_finish(p_xid, 'commit') $$;
COMMENT ON FUNCTION credits.dist_commit(text) IS
  'Decide commit and apply it to every leg in one call (a replay when already committed). Returns the final '
  'state; SX107 unknown, SX110 not prepared, SX111 deadline passed, SX108 aborted.';

CREATE OR REPLACE FUNCTION credits.dist_abort(
  p_xid text, OUT xid text, OUT state text, OUT decision text, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM credits._dist_finish(p_xid, 'abort') $$;
COMMENT ON FUNCTION credits.dist_abort(text) IS
  'Decide abort and release every leg in one call; allowed until commit is logged, also past the deadline (a '
  'replay when already aborted). SX107 unknown, SX109 already committed.';
