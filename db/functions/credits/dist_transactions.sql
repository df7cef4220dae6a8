-- Distributed transactions: several legs, across accounts and tenants, that
-- commit all or none. The coordinator record (credits.dist_transactions) is
-- durable, so each step can be its own call and a crash between steps is
-- finished by recovery:
--   begin    record the transaction and its legs                 -> active
--   prepare  each leg votes: a debit is reserved as a hold (pinned to the
--            deadline), a credit is checked; all yes             -> prepared
--            any no: abort at once                               -> aborted
--   decide   log the decision: commit (only when prepared, before the
--            deadline; pins the holds so they cannot expire)     -> committing
--            or abort                                            -> aborting
--   complete apply the decision to every leg                     -> committed | aborted
-- commit / abort = decide + complete in one call. No decision by the deadline
-- means abort (presumed abort): recovery aborts it, and commit refuses it.
-- Every state change is appended to credits.dist_events.
-- Lock order: the transaction row, then every leg's account (in account_id
-- order, all of them before any write), then the holds and records. Audited
-- writes lock audit chain heads shared across accounts, so nothing may wait
-- for an account after writing one (see credits/holds.sql).

-- State machine on the table itself: allowed transitions only, decisions and
-- identity are immutable, final states are final.
CREATE OR REPLACE FUNCTION credits._dist_tx_transition_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'credits.dist_transactions rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.dist_tx_id, NEW.xid, NEW.coordinator, NEW.legs, NEW.deadline, NEW.created_at)
     IS DISTINCT FROM (OLD.dist_tx_id, OLD.xid, OLD.coordinator, OLD.legs, OLD.deadline, OLD.created_at)
     OR (OLD.decision IS NOT NULL AND NEW.decision IS DISTINCT FROM OLD.decision) THEN
    RAISE EXCEPTION 'distributed transaction %: identity and decision are immutable', OLD.xid
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.state <> OLD.state AND (OLD.state, NEW.state) NOT IN (
       ('active', 'prepared'), ('active', 'aborting'),
       ('prepared', 'committing'), ('prepared', 'aborting'),
       ('committing', 'committed'), ('aborting', 'aborted')) THEN
    RAISE EXCEPTION 'distributed transaction %: % -> % is not a legal transition', OLD.xid, OLD.state, NEW.state
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.state = OLD.state AND OLD.state IN ('committed', 'aborted') THEN
    RAISE EXCEPTION 'distributed transaction % is % and can change no more', OLD.xid, OLD.state
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER dist_transactions_transition_guard
  BEFORE UPDATE OR DELETE ON credits.dist_transactions
  FOR EACH ROW EXECUTE FUNCTION credits._dist_tx_transition_guard();
ALTER TABLE credits.dist_transactions ENABLE ALWAYS TRIGGER dist_transactions_transition_guard;

-- A leg votes once and has one outcome.
CREATE OR REPLACE FUNCTION credits._dist_participant_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'credits.dist_participants rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.dist_tx_id, NEW.leg_no, NEW.tenant_id, NEW.account_id, NEW.amount)
       IS DISTINCT FROM (OLD.dist_tx_id, OLD.leg_no, OLD.tenant_id, OLD.account_id, OLD.amount)
     OR (OLD.vote IS NOT NULL AND (NEW.vote, NEW.hold_id) IS DISTINCT FROM (OLD.vote, OLD.hold_id))
     OR (OLD.outcome IS NOT NULL AND (NEW.outcome, NEW.entry_id) IS DISTINCT FROM (OLD.outcome, OLD.entry_id)) THEN
    RAISE EXCEPTION 'leg % of distributed transaction %: a vote and an outcome are given once',
      OLD.leg_no, OLD.dist_tx_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER dist_participants_guard
  BEFORE UPDATE OR DELETE ON credits.dist_participants
  FOR EACH ROW EXECUTE FUNCTION credits._dist_participant_guard();
ALTER TABLE credits.dist_participants ENABLE ALWAYS TRIGGER dist_participants_guard;

SELECT ops._make_append_only('credits.dist_events', 'dist_events_');

-- A prepared credit leg must be able to land: closing its account is refused
-- until the transaction is complete (prepare locks the account while it
-- votes, so a concurrent close waits and then sees the vote).
CREATE OR REPLACE FUNCTION credits._refuse_close_with_pending_credit()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tx bigint;
BEGIN
  SELECT p.dist_tx_id INTO v_tx FROM credits.dist_participants p
   WHERE p.account_id = NEW.account_id AND p.amount > 0 AND p.outcome IS NULL AND p.vote = 'yes' LIMIT 1;
  IF FOUND THEN
    PERFORM ops._fail('SX114', format('account %s has a pending credit from distributed transaction %s',
                                      NEW.account_id, v_tx),
                      jsonb_build_object('account_id', NEW.account_id, 'dist_tx_id', v_tx));
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER accounts_refuse_close_with_pending_credit
  BEFORE UPDATE OF status ON credits.accounts
  FOR EACH ROW WHEN (NEW.status = 'closed' AND OLD.status <> 'closed')
  EXECUTE FUNCTION credits._refuse_close_with_pending_credit();

CREATE OR REPLACE FUNCTION credits._dist_event(p_tx bigint, p_leg int, p_event text, p_detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO credits.dist_events (dist_tx_id, leg_no, event, detail) VALUES (p_tx, p_leg, p_event, coalesce(p_detail, '{}'));
$$;

-- Legs: a JSON array of 1..100 {"tenant_id", "account_id", "amount"}; amount
-- < 0 debits, > 0 credits; each account at most once. Returns them normalised.
CREATE OR REPLACE FUNCTION credits._check_legs(p_legs jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_out jsonb := '[]';
  v_leg jsonb;
  v_n   int := 0;
  v_amount numeric;
BEGIN
  IF p_legs IS NULL OR jsonb_typeof(p_legs) <> 'array' OR jsonb_array_length(p_legs) NOT BETWEEN 1 AND 100 THEN
    PERFORM ops._fail('SX112', 'legs must be an array of 1 to 100 legs', '{}');
  END IF;
  FOR v_leg IN SELECT value FROM jsonb_array_elements(p_legs) LOOP
    v_n := v_n + 1;
    IF jsonb_typeof(v_leg) <> 'object' OR jsonb_typeof(v_leg -> 'tenant_id') IS DISTINCT FROM 'string'
       OR jsonb_typeof(v_leg -> 'account_id') IS DISTINCT FROM 'number'
       OR jsonb_typeof(v_leg -> 'amount') IS DISTINCT FROM 'number'
       OR (v_leg - 'tenant_id' - 'account_id' - 'amount') <> '{}'::jsonb THEN
      PERFORM ops._fail('SX112', format('leg %s must be {"tenant_id": text, "account_id": integer, "amount": integer}', v_n),
                        jsonb_build_object('leg', v_n));
    END IF;
    v_amount := (v_leg ->> 'amount')::numeric;
    IF (v_leg ->> 'account_id')::numeric <> trunc((v_leg ->> 'account_id')::numeric)
       OR (v_leg ->> 'account_id')::numeric NOT BETWEEN 1 AND 9223372036854775807
       OR v_amount <> trunc(v_amount) OR v_amount = 0 OR abs(v_amount) > 1000000000000000 THEN
      PERFORM ops._fail('SX112', format('leg %s: account_id must be a positive integer and amount a nonzero integer of at most 10^15 credits', v_n),
                        jsonb_build_object('leg', v_n));
    END IF;
    v_out := v_out || jsonb_build_array(jsonb_build_object(
      'tenant_id', v_leg ->> 'tenant_id', 'account_id', (v_leg ->> 'account_id')::bigint, 'amount', v_amount::bigint));
  END LOOP;
  IF (SELECT count(DISTINCT value -> 'account_id') FROM jsonb_array_elements(v_out)) <> v_n THEN
    PERFORM ops._fail('SX112', 'each account may appear in at most one leg', '{}');
  END IF;
  RETURN v_out;
END
$$;

CREATE OR REPLACE FUNCTION credits._dist_lock(p_xid text)
RETURNS credits.dist_transactions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
BEGIN
  SELECT * INTO t FROM credits.dist_transactions x WHERE x.xid = p_xid FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX107', format('distributed transaction %L not found', p_xid), jsonb_build_object('xid', p_xid));
  END IF;
  RETURN t;
END
$$;

-- Distributed calls write several audited tables and several holds in no
-- particular chain order: they run one at a time (see credits/holds.sql).
-- Taken after the accounts' locks and before any write.
CREATE OR REPLACE FUNCTION credits._dist_serialize()
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_advisory_xact_lock(credits._dist_lock_key());
$$;

-- Lock the accounts of every leg, in account_id order, before any write, then
-- serialize. Recovery passes p_nowait: a busy account is retried on the next
-- run rather than waited for while earlier transactions' locks are held.
CREATE OR REPLACE FUNCTION credits._dist_lock_accounts(t credits.dist_transactions, p_nowait boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_nowait THEN
    PERFORM 1 FROM credits.accounts a
     WHERE a.account_id IN (SELECT p.account_id FROM credits.dist_participants p WHERE p.dist_tx_id = t.dist_tx_id)
     ORDER BY a.account_id FOR UPDATE NOWAIT;
  ELSE
    PERFORM 1 FROM credits.accounts a
     WHERE a.account_id IN (SELECT p.account_id FROM credits.dist_participants p WHERE p.dist_tx_id = t.dist_tx_id)
     ORDER BY a.account_id FOR UPDATE;
  END IF;
  PERFORM credits._dist_serialize();
END
$$;

-- Begin: record the transaction and its legs. Idempotent by xid.
CREATE OR REPLACE FUNCTION credits.dist_begin(
  p_xid text, p_legs jsonb, p_timeout interval DEFAULT interval '1 minute', p_coordinator text DEFAULT 'internal',
  OUT dist_tx_id bigint, OUT xid text, OUT coordinator text, OUT state text, OUT deadline timestamptz,
  OUT legs int, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
  v_legs jsonb;
BEGIN
  IF p_xid IS NULL OR length(p_xid) NOT BETWEEN 1 AND 200 THEN
    PERFORM ops._fail('SX007', 'xid must be 1 to 200 characters', jsonb_build_object('argument', 'xid'));
  END IF;
  IF p_coordinator IS NULL OR p_coordinator NOT IN ('internal', 'external') THEN
    PERFORM ops._fail('SX007', 'coordinator must be internal or external', jsonb_build_object('argument', 'coordinator'));
  END IF;
  v_legs := credits._check_legs(p_legs);
  PERFORM credits._check_ttl('timeout', p_timeout);
  PERFORM credits._dist_serialize();
  INSERT INTO credits.dist_transactions AS x (xid, coordinator, legs, deadline)
  VALUES (p_xid, p_coordinator, v_legs, now() + p_timeout)
  ON CONFLICT ON CONSTRAINT dist_tx_xid_unique DO NOTHING
  RETURNING x.* INTO t;
  replayed := NOT FOUND;
  IF NOT replayed THEN
    INSERT INTO credits.dist_participants (dist_tx_id, leg_no, tenant_id, account_id, amount)
    SELECT t.dist_tx_id, l.ord, l.value ->> 'tenant_id', (l.value ->> 'account_id')::bigint, (l.value ->> 'amount')::bigint
      FROM jsonb_array_elements(v_legs) WITH ORDINALITY AS l(value, ord);
    PERFORM credits._dist_event(t.dist_tx_id, NULL, 'begun',
      jsonb_build_object('coordinator', p_coordinator, 'deadline', t.deadline, 'legs', v_legs));
  ELSE
    SELECT * INTO t FROM credits.dist_transactions x WHERE x.xid = p_xid;
    IF t.legs <> v_legs OR t.coordinator <> p_coordinator THEN
      PERFORM ops._fail('SX005', format('xid %L was used for another distributed transaction', p_xid),
                        jsonb_build_object('dist_tx_id', t.dist_tx_id, 'state', t.state));
    END IF;
  END IF;
  dist_tx_id := t.dist_tx_id; xid := t.xid; coordinator := t.coordinator; state := t.state;
  deadline := t.deadline; legs := jsonb_array_length(t.legs); created_at := t.created_at;
END
$$;

-- Reserve a debit leg as a hold of the transaction, expiring at its deadline.
CREATE OR REPLACE FUNCTION credits._reserve_leg(t credits.dist_transactions, p credits.dist_participants)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_amount bigint := -p.amount;
  v_hold   bigint;
BEGIN
  UPDATE credits.accounts a SET held = a.held + v_amount
   WHERE a.account_id = p.account_id AND a.tenant_id = p.tenant_id AND a.status = 'open'
     AND a.balance - a.held >= v_amount;
  IF NOT FOUND THEN
    IF credits._release_expired_holds(p.account_id) > 0 THEN
      UPDATE credits.accounts a SET held = a.held + v_amount
       WHERE a.account_id = p.account_id AND a.tenant_id = p.tenant_id AND a.status = 'open'
         AND a.balance - a.held >= v_amount;
    END IF;
    IF NOT FOUND THEN
      PERFORM credits._debit_refused(p.tenant_id, p.account_id, v_amount);
    END IF;
  END IF;
  INSERT INTO credits.holds AS x (tenant_id, account_id, amount, reason, idem_key, expires_at, dist_tx_id)
  VALUES (p.tenant_id, p.account_id, v_amount, left('distributed transaction ' || t.xid, 500),
          format('dist:%s:%s', t.dist_tx_id, p.leg_no), t.deadline, t.dist_tx_id)
  RETURNING x.hold_id INTO v_hold;
  RETURN v_hold;
END
$$;

-- Prepare: every leg not yet voted votes, in account order. A refusal of a
-- leg (a named SXnnn error) is its "no" vote: the transaction aborts at once.
CREATE OR REPLACE FUNCTION credits.dist_prepare(
  p_xid text,
  OUT xid text, OUT state text, OUT decision text, OUT votes_yes int, OUT votes_no int,
  OUT deadline timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
  p credits.dist_participants;
  v_hold bigint;
  v_state text;
  v_msg text;
  v_no boolean := false;
BEGIN
  t := credits._dist_lock(p_xid);
  replayed := t.state <> 'active';
  IF t.state IN ('aborting', 'aborted') THEN
    PERFORM ops._fail('SX108', format('distributed transaction %L was aborted', p_xid),
                      jsonb_build_object('xid', p_xid, 'state', t.state, 'reason', t.reason));
  END IF;
  IF t.state = 'active' THEN
    IF t.deadline <= now() THEN
      PERFORM ops._fail('SX111', format('distributed transaction %L passed its deadline %s undecided', p_xid, t.deadline),
                        jsonb_build_object('xid', p_xid, 'deadline', t.deadline));
    END IF;
    PERFORM credits._dist_lock_accounts(t);
    FOR p IN SELECT * FROM credits.dist_participants x WHERE x.dist_tx_id = t.dist_tx_id AND x.vote IS NULL
              ORDER BY x.account_id LOOP
      BEGIN
        v_hold := NULL;
        IF p.amount < 0 THEN
          v_hold := credits._reserve_leg(t, p);
        ELSE
          PERFORM 1 FROM credits.accounts a
           WHERE a.account_id = p.account_id AND a.tenant_id = p.tenant_id AND a.status <> 'closed'
             AND a.balance <= 9223372036854775807 - p.amount
          FOR SHARE;
          IF NOT FOUND THEN
            PERFORM credits._credit_refused(p.tenant_id, p.account_id, p.amount);
          END IF;
        END IF;
        UPDATE credits.dist_participants x SET vote = 'yes', hold_id = v_hold, voted_at = now()
         WHERE x.dist_tx_id = p.dist_tx_id AND x.leg_no = p.leg_no;
        PERFORM credits._dist_event(t.dist_tx_id, p.leg_no, 'voted_yes', jsonb_build_object('hold_id', v_hold));
      EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        IF v_state NOT LIKE 'SX%' THEN
          RAISE;
        END IF;
        UPDATE credits.dist_participants x SET vote = 'no', vote_reason = v_state || ': ' || v_msg, voted_at = now()
         WHERE x.dist_tx_id = p.dist_tx_id AND x.leg_no = p.leg_no;
        PERFORM credits._dist_event(t.dist_tx_id, p.leg_no, 'voted_no',
                                    jsonb_build_object('sqlstate', v_state, 'message', v_msg));
        v_no := true;
      END;
      EXIT WHEN v_no;  -- one "no" decides: no need to reserve the rest
    END LOOP;
    IF v_no THEN
      t := credits._dist_decide(t, 'abort', 'a participant voted no');
      t := credits._dist_complete(t);
    ELSE
      UPDATE credits.dist_transactions x SET state = 'prepared' WHERE x.dist_tx_id = t.dist_tx_id RETURNING x.* INTO t;
      PERFORM credits._dist_event(t.dist_tx_id, NULL, 'prepared');
    END IF;
  END IF;
  xid := t.xid; state := t.state; decision := t.decision; deadline := t.deadline;
  SELECT count(*) FILTER (WHERE x.vote = 'yes'), count(*) FILTER (WHERE x.vote = 'no')
    INTO votes_yes, votes_no FROM credits.dist_participants x WHERE x.dist_tx_id = t.dist_tx_id;
END
$$;

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

CREATE OR REPLACE FUNCTION credits.dist_abort(
  p_xid text, OUT xid text, OUT state text, OUT decision text, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM credits._dist_finish(p_xid, 'abort') $$;

-- A transaction, its legs and its history.
CREATE OR REPLACE FUNCTION credits.get_dist_transaction(
  p_xid text,
  OUT dist_tx_id bigint, OUT xid text, OUT coordinator text, OUT state text, OUT decision text,
  OUT reason text, OUT deadline timestamptz, OUT created_at timestamptz, OUT decided_at timestamptz,
  OUT completed_at timestamptz, OUT participants jsonb, OUT events jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
BEGIN
  SELECT * INTO t FROM credits.dist_transactions x WHERE x.xid = p_xid;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX107', format('distributed transaction %L not found', p_xid), jsonb_build_object('xid', p_xid));
  END IF;
  dist_tx_id := t.dist_tx_id; xid := t.xid; coordinator := t.coordinator; state := t.state;
  decision := t.decision; reason := t.reason; deadline := t.deadline; created_at := t.created_at;
  decided_at := t.decided_at; completed_at := t.completed_at;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'leg_no', p.leg_no, 'tenant_id', p.tenant_id, 'account_id', p.account_id, 'amount', p.amount,
           'hold_id', p.hold_id, 'vote', p.vote, 'vote_reason', p.vote_reason, 'outcome', p.outcome,
           'entry_id', p.entry_id) ORDER BY p.leg_no), '[]')
    INTO participants FROM credits.dist_participants p WHERE p.dist_tx_id = t.dist_tx_id;
  SELECT coalesce(jsonb_agg(jsonb_build_object('leg_no', e.leg_no, 'event', e.event, 'detail', e.detail, 'at', e.at)
           ORDER BY e.event_id), '[]')
    INTO events FROM credits.dist_events e WHERE e.dist_tx_id = t.dist_tx_id;
END
$$;

-- Recovery: drive every transaction whose decision is logged to completion,
-- and abort every undecided one past its deadline (presumed abort). Skips
-- transactions a coordinator holds right now; each transaction is its own
-- subtransaction, so one failure (reported, retried next run) does not stop
-- the others. Safe to run twice or to die midway.
CREATE OR REPLACE FUNCTION credits.dist_recover(p_limit int DEFAULT 100)
RETURNS TABLE (xid text, action text, state text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
  v_id bigint;
  v_was text;
  v_state text;
  v_msg text;
BEGIN
  FOR t IN SELECT * FROM credits.dist_transactions x
            WHERE x.state NOT IN ('committed', 'aborted')
              AND (x.decision IS NOT NULL OR x.deadline <= now())
            ORDER BY x.deadline LIMIT p_limit
            FOR UPDATE SKIP LOCKED LOOP
    xid := t.xid; v_id := t.dist_tx_id; v_was := t.state;
    BEGIN
      PERFORM credits._dist_lock_accounts(t, true);
      IF t.decision IS NULL THEN
        action := 'presumed abort';
        t := credits._dist_decide(t, 'abort', 'presumed abort: no decision by the deadline');
      ELSE
        action := 'completed ' || t.decision;
      END IF;
      t := credits._dist_complete(t);
      state := t.state;
    EXCEPTION WHEN lock_not_available THEN
      action := 'skipped: an account is busy; next run';
      state := v_was;
    WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
      PERFORM credits._dist_event(v_id, NULL, 'recovery_failed',
                                  jsonb_build_object('sqlstate', v_state, 'message', v_msg));
      action := 'failed: ' || v_state || ' ' || v_msg;
      state := v_was;
    END;
    RETURN NEXT;
  END LOOP;
END
$$;

SELECT ops._register_job('shieldx-dist-recover', '* * * * *', 'SELECT * FROM credits.dist_recover()',
  'Finish distributed transactions whose decision is logged; abort undecided ones past their deadline.');
