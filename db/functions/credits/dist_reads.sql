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
COMMENT ON FUNCTION credits.get_dist_transaction(text) IS
  'A distributed transaction by xid: its state, decision, deadline, legs (participants) and history (events) as '
  'JSON. SX107 unknown transaction.';
