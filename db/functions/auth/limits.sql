-- Token bucket per key, shared by every API replica. An API process leases a
-- few tokens at a time (p_want) and spends them locally, so most requests
-- need no limiter round trip; what replicas spend together never exceeds
-- rate_per_s * t + burst, because every token is taken here first.
-- The same call re-checks the key, so a revocation reaches every replica
-- within one lease.
-- A request costs one token per ledger operation it carries (a batch of N
-- items costs N, as N single calls would): p_min is what the request cannot
-- do without. Fewer than p_min tokens in the bucket: nothing is taken.
CREATE OR REPLACE FUNCTION auth.take(
  p_key_id text, p_want int, p_min int,
  OUT active boolean, OUT granted int, OUT tokens double precision, OUT retry_after_s double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_rate  double precision;
  v_burst double precision;
  v_now   timestamptz := clock_timestamp();
BEGIN
  IF p_want IS NULL OR p_want NOT BETWEEN 1 AND 100000 THEN
    PERFORM ops._fail('SX007', 'want must be 1 to 100000 tokens', jsonb_build_object('argument', 'want'));
  END IF;
  IF p_min IS NULL OR p_min NOT BETWEEN 1 AND p_want THEN
    PERFORM ops._fail('SX007', 'min must be 1 to want tokens', jsonb_build_object('argument', 'min'));
  END IF;
  SELECT k.rate_per_s, k.burst INTO v_rate, v_burst FROM auth.keys k
   WHERE k.key_id = p_key_id AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now());
  active := FOUND;
  granted := 0; retry_after_s := 0;
  IF NOT active THEN
    RETURN;
  END IF;
  -- One guarded upsert (no read-then-write). A missing row is a full bucket.
  -- If another lease moved refilled_at past our clock while we waited for the
  -- row lock, elapsed is 0: its refill already counted that time. The grant:
  -- as many as wanted and there are, if there are at least p_min; else none.
  INSERT INTO auth.buckets AS b (key_id, tokens, refilled_at, last_granted)
  SELECT p_key_id, v_burst - g.n, v_now, g.n
    FROM (SELECT CASE WHEN floor(v_burst) >= p_min THEN least(p_want, floor(v_burst))::int ELSE 0 END AS n) AS g
  ON CONFLICT (key_id) DO UPDATE SET
    last_granted =
      CASE WHEN floor(least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at))))
                >= p_min
           THEN least(p_want, floor(least(v_burst,
                                b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at)))))
           ELSE 0 END,
    tokens =
      least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at)))
      - CASE WHEN floor(least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at))))
                  >= p_min
             THEN least(p_want, floor(least(v_burst,
                                  b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at)))))
             ELSE 0 END,
    refilled_at = greatest(b.refilled_at, v_now)
  RETURNING b.last_granted, b.tokens INTO granted, tokens;
  IF granted = 0 THEN
    -- NULL: never, the key's burst is smaller than p_min (split the request).
    retry_after_s := CASE WHEN p_min <= v_burst THEN (p_min - tokens) / v_rate END;
  END IF;
END
$$;
COMMENT ON FUNCTION auth.take(text, integer, integer) IS
  'Lease up to p_want tokens from a key''s token bucket, shared by every API replica (rate_per_s with burst), '
  're-checking that the key is active; nothing unless at least p_min are there. Returns active, the '
  'tokens granted and, when none, the seconds to wait (NULL when p_min exceeds the burst); SX007 for an invalid '
  'p_want or p_min.';

-- The signature before p_min (API processes of the previous release call it
-- while a new one rolls out): at least one token.
CREATE OR REPLACE FUNCTION auth.take(
  p_key_id text, p_want int DEFAULT 1,
  OUT active boolean, OUT granted int, OUT tokens double precision, OUT retry_after_s double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  SELECT t.active, t.granted, t.tokens, t.retry_after_s INTO active, granted, tokens, retry_after_s
    FROM auth.take(p_key_id, p_want, 1) AS t;
END
$$;
COMMENT ON FUNCTION auth.take(text, integer) IS
  'auth.take(p_key_id, p_want, 1): lease up to p_want tokens, at least one (the signature before p_min).';
