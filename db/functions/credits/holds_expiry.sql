-- Holds past their deadline: lazy release under the account lock, and the
-- expiry job (the hold lifecycle is described in holds.sql).

-- Release, with an explicit clock, the expired active holds of the given
-- accounts, which the caller has locked. Only ever earlier than the deadline
-- is unsafe, and that direction only returns funds; tests move time with it.
-- Returns the number of holds and the amount released.
CREATE OR REPLACE FUNCTION credits._release_expired(p_accounts bigint[], p_now timestamptz,
  OUT holds int, OUT amount bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  h record;
  v_ids bigint[] := '{}';
BEGIN
  holds := 0; amount := 0;
  PERFORM 1 FROM credits.holds y
   WHERE y.account_id = ANY (p_accounts) AND y.status = 'active' AND y.expires_at <= p_now LIMIT 1;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock_shared(credits._dist_lock_key());
  -- SKIP LOCKED: commit and abort lock the account first, so nobody else
  -- holds these rows; it only guards against a writer that breaks the order.
  FOR h IN SELECT y.hold_id, y.amount FROM credits.holds y
            WHERE y.account_id = ANY (p_accounts) AND y.status = 'active' AND y.expires_at <= p_now
            ORDER BY y.hold_id
            FOR UPDATE SKIP LOCKED LOOP
    UPDATE credits.holds x SET status = 'expired', resolved_at = now() WHERE x.hold_id = h.hold_id;
    v_ids := v_ids || h.hold_id;
    holds := holds + 1; amount := amount + h.amount;
  END LOOP;
  UPDATE credits.accounts a SET held = a.held - r.total
    FROM (SELECT y.account_id, sum(y.amount) AS total FROM credits.holds y
           WHERE y.hold_id = ANY (v_ids) GROUP BY y.account_id) r
   WHERE a.account_id = r.account_id;
END
$$;

-- Lazy release, under the account row lock: mark this account's active holds
-- past their deadline 'expired' and take them out of held. Returns the amount
-- released. consume and transfer call it when they refuse a debit.
CREATE OR REPLACE FUNCTION credits._release_expired_holds(p_account bigint)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT credits._release_expired_holds_at(p_account, now());
$$;

CREATE OR REPLACE FUNCTION credits._release_expired_holds_at(p_account bigint, p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM 1 FROM credits.accounts a WHERE a.account_id = p_account FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  RETURN (SELECT r.amount FROM credits._release_expired(ARRAY[p_account], p_now) r);
END
$$;

-- The expiry job: release expired holds of up to p_batch accounts, skipping
-- accounts busy right now (the next run, or the account's next refused debit,
-- gets them). Safe to run twice or to die midway: each release is guarded by
-- status = 'active' and a crash rolls back its own work.
CREATE OR REPLACE FUNCTION credits._expire_holds_at(p_now timestamptz, p_batch int DEFAULT 500,
  OUT accounts int, OUT holds bigint, OUT amount bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_accounts bigint[];
  r record;
BEGIN
  SELECT coalesce(array_agg(l.account_id), '{}') INTO v_accounts FROM (
    SELECT a.account_id FROM credits.accounts a
     WHERE a.account_id IN (SELECT DISTINCT h.account_id FROM credits.holds h
                             WHERE h.status = 'active' AND h.expires_at <= p_now LIMIT p_batch)
     ORDER BY a.account_id FOR UPDATE SKIP LOCKED) l;
  SELECT * INTO r FROM credits._release_expired(v_accounts, p_now);
  accounts := cardinality(v_accounts); holds := r.holds; amount := r.amount;
END
$$;

CREATE OR REPLACE FUNCTION credits.expire_holds(p_batch int DEFAULT 500,
  OUT accounts int, OUT holds bigint, OUT amount bigint)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM credits._expire_holds_at(now(), p_batch);
$$;
COMMENT ON FUNCTION credits.expire_holds(integer) IS
  'Job: release active holds past their deadline on up to p_batch accounts, skipping accounts busy now. Returns '
  'the accounts, holds and amount released; safe to rerun.';

SELECT ops._register_job('shieldx-expire-holds', '* * * * *', 'SELECT * FROM credits.expire_holds()',
  'Release holds past their deadline (capture already refuses them); returns their funds to available.');
