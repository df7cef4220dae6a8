-- Token bucket per key, shared by every API replica. An API process leases a
-- few tokens at a time (p_want) and spends them locally, so most requests
-- need no limiter round trip; what replicas spend together never exceeds
-- rate_per_s * t + burst, because every token is taken here first.
-- The same call re-checks the key, so a revocation reaches every replica
-- within one lease.
CREATE OR REPLACE FUNCTION auth.take(
  p_key_id text, p_want int DEFAULT 1,
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
  SELECT k.rate_per_s, k.burst INTO v_rate, v_burst FROM auth.keys k
   WHERE k.key_id = p_key_id AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now());
  active := FOUND;
  granted := 0; retry_after_s := 0;
  IF NOT active THEN
    RETURN;
  END IF;
  -- One guarded upsert (no read-then-write). A missing row is a full bucket.
  -- If another lease moved refilled_at past our clock while we waited for the
  -- row lock, elapsed is 0: its refill already counted that time.
  INSERT INTO auth.buckets AS b (key_id, tokens, refilled_at, last_granted)
  VALUES (p_key_id, v_burst - least(p_want, floor(v_burst)), v_now, least(p_want, floor(v_burst))::int)
  ON CONFLICT (key_id) DO UPDATE SET
    last_granted = least(p_want, floor(least(v_burst,
                     b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at)))))::int,
    tokens = least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at)))
             - least(p_want, floor(least(v_burst,
                 b.tokens + v_rate * greatest(0, extract(epoch FROM v_now - b.refilled_at))))),
    refilled_at = greatest(b.refilled_at, v_now)
  RETURNING b.last_granted, b.tokens INTO granted, tokens;
  IF granted = 0 THEN
    retry_after_s := (1 - tokens) / v_rate;
  END IF;
END
$$;
COMMENT ON FUNCTION auth.take(text, integer) IS
  'Lease up to p_want tokens from a key''s token bucket, shared by every API replica (rate_per_s with burst), '
  're-checking that the key is active. Returns active, the tokens granted and, when none, the seconds to wait; '
  'SX007 for an invalid p_want.';
