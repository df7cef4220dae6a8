-- The service as a participant in another system's two-phase commit. The
-- external coordinator names the transaction (xid) and drives it:
--   ext_prepare(xid, legs)  begin + prepare in one call; answers the vote
--   ext_commit(xid)         after every participant voted yes
--   ext_abort(xid)          at any time before commit
-- Every call is idempotent (the coordinator retries until it hears back).
-- Presumed abort: no decision by the deadline and recovery aborts, so the
-- coordinator must deliver commit before the timeout it asked for. An abort
-- for an xid never prepared here leaves a tombstone, so a prepare that
-- arrives late is answered "no" instead of holding funds nobody will release.

CREATE OR REPLACE FUNCTION credits._ext_tx(p_xid text)
RETURNS credits.dist_transactions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
BEGIN
  SELECT * INTO t FROM credits.dist_transactions x WHERE x.xid = p_xid AND x.coordinator = 'external';
  IF NOT FOUND THEN
    PERFORM ops._fail('SX107', format('external transaction %L not found', p_xid), jsonb_build_object('xid', p_xid));
  END IF;
  RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION credits.ext_prepare(
  p_xid text, p_legs jsonb, p_timeout interval DEFAULT interval '5 minutes',
  OUT xid text, OUT vote text, OUT state text, OUT reason text, OUT deadline timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t      credits.dist_transactions;
  b      record;
  r      record;
  v_legs jsonb;
BEGIN
  -- The arguments first, as credits.dist_begin checks them: a bad request is
  -- refused by name even for an xid that is aborted already.
  PERFORM credits._check_xid(p_xid);
  v_legs := credits._check_legs(p_legs);
  PERFORM credits._check_ttl('timeout', p_timeout);
  SELECT * INTO t FROM credits.dist_transactions x WHERE x.xid = p_xid;
  IF FOUND AND t.coordinator = 'external' AND t.decision = 'abort' THEN
    xid := t.xid; vote := 'no'; state := t.state; reason := t.reason; deadline := t.deadline; replayed := true;
    RETURN;
  END IF;
  -- Lock the legs' accounts before begin writes any (audited) row: see dist_begin_prepare.sql.
  PERFORM 1 FROM credits.accounts a
   WHERE a.account_id IN (SELECT (l ->> 'account_id')::bigint FROM jsonb_array_elements(v_legs) l)
   ORDER BY a.account_id FOR UPDATE;
  PERFORM credits._dist_serialize();
  SELECT * INTO b FROM credits.dist_begin(p_xid, p_legs, p_timeout, 'external');
  SELECT * INTO r FROM credits.dist_prepare(p_xid);
  SELECT * INTO t FROM credits.dist_transactions x WHERE x.xid = p_xid;
  xid := t.xid; state := t.state; reason := t.reason; deadline := t.deadline; replayed := b.replayed;
  vote := CASE WHEN t.state IN ('prepared', 'committing', 'committed') THEN 'yes' ELSE 'no' END;
  IF vote = 'no' THEN
    SELECT p.vote_reason INTO reason FROM credits.dist_participants p
     WHERE p.dist_tx_id = t.dist_tx_id AND p.vote = 'no' LIMIT 1;
  END IF;
END
$$;
COMMENT ON FUNCTION credits.ext_prepare(text, jsonb, interval) IS
  'Two-phase commit driven by an external coordinator: begin and prepare the legs of p_xid in one call and answer '
  'the vote (''yes'' or ''no'' with a reason), holding debits until the deadline p_timeout away. Idempotent; a '
  'prepare after an abort answers ''no''. SX007 invalid xid, SX112 invalid legs, SX106 invalid timeout (checked '
  'before anything else, an aborted xid included).';

CREATE OR REPLACE FUNCTION credits.ext_commit(
  p_xid text, OUT xid text, OUT state text, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r record;
BEGIN
  PERFORM credits._ext_tx(p_xid);
  SELECT * INTO r FROM credits.dist_commit(p_xid);
  xid := r.xid; state := r.state; replayed := r.replayed;
END
$$;
COMMENT ON FUNCTION credits.ext_commit(text) IS
  'Commit an external coordinator''s transaction after every participant voted yes; idempotent. SX107 unknown '
  'transaction, SX110 not prepared, SX111 deadline passed, SX108 aborted.';

CREATE OR REPLACE FUNCTION credits.ext_abort(
  p_xid text, OUT xid text, OUT state text, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t credits.dist_transactions;
  r record;
BEGIN
  PERFORM credits._check_xid(p_xid);
  -- Never prepared here: record the abort (a tombstone with no legs; one
  -- audited row, so it needs no serializing).
  INSERT INTO credits.dist_transactions AS x (xid, coordinator, state, decision, legs, deadline, reason,
                                               decided_at, completed_at)
  VALUES (p_xid, 'external', 'aborted', 'abort', '[]', now(), 'aborted before any prepare', now(), now())
  ON CONFLICT ON CONSTRAINT dist_tx_xid_unique DO NOTHING
  RETURNING x.* INTO t;
  IF FOUND THEN
    PERFORM credits._dist_event(t.dist_tx_id, NULL, 'aborted', jsonb_build_object('reason', t.reason));
    xid := t.xid; state := t.state; replayed := false;
    RETURN;
  END IF;
  PERFORM credits._ext_tx(p_xid);
  SELECT * INTO r FROM credits.dist_abort(p_xid);
  xid := r.xid; state := r.state; replayed := r.replayed;
END
$$;
COMMENT ON FUNCTION credits.ext_abort(text) IS
  'Abort an external coordinator''s transaction at any time before commit; an abort of an unknown xid leaves a '
  'tombstone so a late prepare answers ''no''. Idempotent; SX007 invalid xid, SX107 xid of an internal '
  'transaction, SX109 already committed.';
