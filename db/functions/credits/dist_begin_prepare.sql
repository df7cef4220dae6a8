-- Distributed transactions, begin and prepare (the overview is in dist_state.sql).

-- A transaction id (xid): 1 to 200 characters, else SX007.
CREATE OR REPLACE FUNCTION credits._check_xid(p_xid text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_xid IS NULL OR pg_catalog.length(p_xid) NOT BETWEEN 1 AND 200 THEN
    PERFORM ops._fail('SX007', 'xid must be 1 to 200 characters', pg_catalog.jsonb_build_object('argument', 'xid'));
  END IF;
END
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
  PERFORM credits._check_xid(p_xid);
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
COMMENT ON FUNCTION credits.dist_begin(text, jsonb, interval, text) IS
  'Begin a distributed transaction named p_xid: legs (JSON array of tenant_id, account_id, amount; < 0 debits) '
  'across accounts and tenants that commit all or none by a deadline p_timeout away. Idempotent by xid. SX112 '
  'invalid legs, SX106 invalid timeout, SX005 xid reused with other legs.';

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
COMMENT ON FUNCTION credits.dist_prepare(text) IS
  'Prepare a distributed transaction: each leg votes (a debit is reserved as a hold, a credit is checked); any '
  'refusal aborts it at once. Returns the state and votes; SX107 unknown transaction, SX108 aborted, SX111 '
  'deadline passed.';
