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
COMMENT ON FUNCTION credits.dist_recover(integer) IS
  'Job: complete every distributed transaction whose decision is logged and abort every undecided one past its '
  'deadline (presumed abort), at most p_limit, skipping those busy now. Returns one row per transaction acted on; '
  'safe to rerun.';

SELECT ops._register_job('shieldx-dist-recover', '* * * * *', 'SELECT * FROM credits.dist_recover()',
  'Finish distributed transactions whose decision is logged; abort undecided ones past their deadline.');
