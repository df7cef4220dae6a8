-- A hold as it stands; an active hold past its deadline reads as 'expired'
-- (it can no longer be used, whether or not the job has run).
CREATE OR REPLACE FUNCTION credits.get_hold(
  p_tenant text, p_hold bigint,
  OUT hold_id bigint, OUT account_id bigint, OUT amount bigint, OUT status text, OUT captured bigint,
  OUT reason text, OUT idem_key text, OUT expires_at timestamptz, OUT created_at timestamptz,
  OUT resolved_at timestamptz, OUT dist_tx_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  SELECT h.hold_id, h.account_id, h.amount,
         CASE WHEN h.status = 'active' AND h.expires_at <= now() THEN 'expired' ELSE h.status END,
         h.captured, h.reason, h.idem_key, h.expires_at, h.created_at, h.resolved_at, h.dist_tx_id
    INTO hold_id, account_id, amount, status, captured, reason, idem_key, expires_at, created_at,
         resolved_at, dist_tx_id
    FROM credits.holds h WHERE h.hold_id = p_hold AND h.tenant_id = p_tenant;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX101', format('hold %s not found', p_hold), jsonb_build_object('hold_id', p_hold));
  END IF;
END
$$;
COMMENT ON FUNCTION credits.get_hold(text, bigint) IS
  'A hold as it stands (an active hold past its deadline reads as ''expired''). SX101 unknown hold.';

-- An account's holds, newest first, keyset-paginated by hold_id; optionally
-- only those in one (effective) status.
CREATE OR REPLACE FUNCTION credits.list_holds(
  p_tenant text, p_account bigint, p_status text DEFAULT NULL, p_before bigint DEFAULT NULL,
  p_limit int DEFAULT 100)
RETURNS TABLE (hold_id bigint, amount bigint, status text, captured bigint, reason text, idem_key text,
               expires_at timestamptz, created_at timestamptz, resolved_at timestamptz, dist_tx_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM credits._check_limit(p_limit);
  IF p_status IS NOT NULL AND p_status NOT IN ('active', 'captured', 'voided', 'expired') THEN
    PERFORM ops._fail('SX007', 'status must be active, captured, voided or expired',
                      jsonb_build_object('argument', 'status'));
  END IF;
  PERFORM credits._require_account(p_tenant, p_account);
  RETURN QUERY
    SELECT s.hold_id, s.amount, s.eff, s.captured, s.reason, s.idem_key, s.expires_at, s.created_at,
           s.resolved_at, s.dist_tx_id
      FROM (SELECT h.*, CASE WHEN h.status = 'active' AND h.expires_at <= now() THEN 'expired' ELSE h.status END AS eff
              FROM credits.holds h
             WHERE h.account_id = p_account AND (p_before IS NULL OR h.hold_id < p_before)) s
     WHERE p_status IS NULL OR s.eff = p_status
     ORDER BY s.hold_id DESC LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION credits.list_holds(text, bigint, text, bigint, integer) IS
  'An account''s holds, newest first, keyset-paginated by hold_id before p_before, optionally only in one '
  'effective status (active, captured, aborted, expired). SX002 unknown account, SX007 invalid status or limit.';

-- Proof that held is the sum of the active holds: returns only the accounts
-- where it is not, so an empty result is the proof.
CREATE OR REPLACE FUNCTION credits.reconcile_holds()
RETURNS TABLE (account_id bigint, tenant_id text, held bigint, active_holds numeric, active_count bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.account_id, a.tenant_id, a.held, coalesce(s.total, 0), coalesce(s.n, 0)
    FROM credits.accounts a
    LEFT JOIN (SELECT h.account_id, sum(h.amount) AS total, count(*) AS n
                 FROM credits.holds h WHERE h.status = 'active' GROUP BY h.account_id) s
      ON s.account_id = a.account_id
   WHERE a.held <> coalesce(s.total, 0);
$$;
COMMENT ON FUNCTION credits.reconcile_holds() IS
  'Accounts whose held amount differs from the sum of their active holds; no rows is the proof that they agree.';
