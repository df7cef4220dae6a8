-- Batches: up to 1,000 ledger operations (consume, grant, transfer, reserve,
-- commit, abort) in one call and one transaction.
--
-- Every item is decided exactly as its single operation decides it: the same
-- argument rules (credits._movement_problem, _transfer_problem,
-- _reserve_problem, _commit_problem), the same guarded UPDATEs (a debit
-- matches only an open account of the tenant with enough available credits),
-- the same idempotency (credits._entry_replay, _hold_replay, _hold_problem),
-- the same refusal reasons (credits._debit_problem, _credit_problem). Items
-- apply in the given order, so two consumes of one account see each other.
--
-- A refusal is a value, never an exception: an item whose guarded UPDATE
-- matches no row is answered with its named error and the next item goes on.
-- So a batch opens no subtransaction at all (an EXCEPTION block per item
-- would, and past 64 of them PostgreSQL's per-backend subtransaction cache
-- overflows and every session slows down). With p_atomic the first refusal
-- raises SX121 naming the item, and the whole call rolls back.
--
-- Every account the batch touches is locked first, in account_id order, so
-- concurrent batches (and single operations, which lock at most two accounts
-- in that order too) cannot deadlock. The journal rows of all items are
-- written by one INSERT at the end (in item order, so entry ids ascend with
-- the items), whose statement-level audit trigger chains them per account.
--
-- Idempotency: an item's key names one request of the tenant, as for the
-- single operation: an item whose key was already used answers as that
-- request's replay (or SX005 with other arguments); a whole batch sent again
-- answers every applied item as a replay. Refusals are not recorded (nothing
-- changed), so a refused item is decided again when sent again. Within one
-- batch a key (or, for commit and abort, a hold) may appear more than once
-- only with the same arguments: the later items answer as replays of the
-- first applied one. The same key with other arguments is SX120, nothing applied.
--
-- Commit and abort name their hold by hold_id, or by hold_key: the
-- idempotency key of the reserve that made it, so one batch can reserve and
-- then commit (or abort) the same hold. The key is looked up when the item
-- applies: an earlier item of the batch (or an earlier request) made the hold,
-- else the item is refused SX101 unknown_hold.

-- What is wrong with the shape of one item (NULL when nothing): an object
-- with a known operation, only that operation's fields, each of its JSON type,
-- and no tenant but the batch's.
CREATE OR REPLACE FUNCTION credits._batch_item_shape(j jsonb, p_tenant text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  v_allowed text[];
  v_bad     text;
BEGIN
  IF jsonb_typeof(j) IS DISTINCT FROM 'object' THEN
    RETURN 'an item must be a JSON object';
  END IF;
  v_allowed := CASE j ->> 'op'
    WHEN 'consume'  THEN '{account_id,amount,idempotency_key,reason}'
    WHEN 'grant'    THEN '{account_id,amount,idempotency_key,reason}'
    WHEN 'transfer' THEN '{from_account,to_account,amount,idempotency_key,reason}'
    WHEN 'reserve'  THEN '{account_id,amount,idempotency_key,ttl_seconds,reason}'
    WHEN 'commit'   THEN '{hold_id,hold_key,amount,reason}'
    WHEN 'abort'    THEN '{hold_id,hold_key}'
  END::text[];
  IF v_allowed IS NULL THEN
    RETURN format('unknown operation %s (expected consume, grant, transfer, reserve, commit or abort)',
                  coalesce((j -> 'op')::text, 'NULL'));
  END IF;
  SELECT string_agg(k, ', ' ORDER BY k) INTO v_bad FROM jsonb_object_keys(j) k
   WHERE k <> ALL (v_allowed || '{op,tenant_id}'::text[]);
  IF v_bad IS NOT NULL THEN
    RETURN format('unknown field(s) for %s: %s', j ->> 'op', v_bad);
  END IF;
  SELECT string_agg(k, ', ' ORDER BY k) INTO v_bad FROM jsonb_each(j) f(k, v)
   WHERE jsonb_typeof(v) <> 'null'
     AND CASE WHEN k IN ('idempotency_key', 'reason', 'tenant_id', 'op', 'hold_key') THEN jsonb_typeof(v) <> 'string'
              ELSE jsonb_typeof(v) <> 'number' OR v::text::numeric <> trunc(v::text::numeric)
                   OR abs(v::text::numeric) > 9223372036854775807 END;
  IF v_bad IS NOT NULL THEN
    RETURN format('field(s) of the wrong type: %s (ids, amounts and ttl_seconds are integers; '
                  'keys and reasons strings)',
                  v_bad);
  END IF;
  IF j ->> 'op' IN ('commit', 'abort') AND (j ->> 'hold_id' IS NULL) = (j ->> 'hold_key' IS NULL) THEN
    RETURN format('%s names its hold by hold_id or by hold_key (the idempotency key of the reserve that made it), '
                  'one of the two', j ->> 'op');
  END IF;
  IF j ->> 'tenant_id' IS DISTINCT FROM p_tenant AND j ? 'tenant_id' THEN
    RETURN format('item names tenant %s; a batch belongs to one tenant (%s)', j ->> 'tenant_id', p_tenant);
  END IF;
  RETURN NULL;
END
$$;


-- The same rule, as one boolean expression that inlines (no per-item call):
-- true when the item is well formed. Integers of 19 digits are left to
-- _batch_item_shape's exact range check.
CREATE OR REPLACE FUNCTION credits._batch_item_ok(j jsonb, p_tenant text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    pg_catalog.jsonb_typeof(j) = 'object'
    AND (j - CASE j ->> 'op'
               WHEN 'consume' THEN ARRAY['op', 'tenant_id', 'account_id', 'amount', 'idempotency_key', 'reason']
               WHEN 'grant' THEN ARRAY['op', 'tenant_id', 'account_id', 'amount', 'idempotency_key', 'reason']
               WHEN 'transfer' THEN ARRAY['op', 'tenant_id', 'from_account', 'to_account', 'amount', 'idempotency_key',
                                          'reason']
               WHEN 'reserve' THEN ARRAY['op', 'tenant_id', 'account_id', 'amount', 'idempotency_key', 'ttl_seconds',
                                         'reason']
               WHEN 'commit' THEN ARRAY['op', 'tenant_id', 'hold_id', 'hold_key', 'amount', 'reason']
               WHEN 'abort' THEN ARRAY['op', 'tenant_id', 'hold_id', 'hold_key']
             END) = '{}'::jsonb
    AND pg_catalog.jsonb_typeof(j -> 'op') = 'string'
    AND coalesce(pg_catalog.jsonb_typeof(j -> 'idempotency_key'), 'null') IN ('string', 'null')
    AND coalesce(pg_catalog.jsonb_typeof(j -> 'reason'), 'null') IN ('string', 'null')
    AND coalesce(pg_catalog.jsonb_typeof(j -> 'hold_key'), 'null') IN ('string', 'null')
    AND (j ->> 'op' NOT IN ('commit', 'abort') OR (j ->> 'hold_id' IS NULL) <> (j ->> 'hold_key' IS NULL))
    AND coalesce(pg_catalog.jsonb_typeof(j -> 'tenant_id'), 'null') IN ('string', 'null')
    AND coalesce(j ->> 'tenant_id', p_tenant) = p_tenant
    AND coalesce(pg_catalog.jsonb_typeof(j -> 'account_id') = 'number' AND (j ->> 'account_id') ~ '^-?[0-9]{1,18}$',
                 j -> 'account_id' IS NULL OR pg_catalog.jsonb_typeof(j -> 'account_id') = 'null')
    AND coalesce(pg_catalog.jsonb_typeof(j -> 'amount') = 'number' AND (j ->> 'amount') ~ '^-?[0-9]{1,18}$',
                 j -> 'amount' IS NULL OR pg_catalog.jsonb_typeof(j -> 'amount') = 'null')
    AND (j -> 'from_account' IS NULL OR (j ->> 'from_account') ~ '^-?[0-9]{1,18}$'
         AND pg_catalog.jsonb_typeof(j -> 'from_account') = 'number')
    AND (j -> 'to_account' IS NULL OR (j ->> 'to_account') ~ '^-?[0-9]{1,18}$'
         AND pg_catalog.jsonb_typeof(j -> 'to_account') = 'number')
    AND (j -> 'hold_id' IS NULL OR (j ->> 'hold_id') ~ '^-?[0-9]{1,18}$'
         AND pg_catalog.jsonb_typeof(j -> 'hold_id') = 'number')
    AND (j -> 'ttl_seconds' IS NULL OR (j ->> 'ttl_seconds') ~ '^-?[0-9]{1,18}$'
         AND pg_catalog.jsonb_typeof(j -> 'ttl_seconds') = 'number'),
    false)
$$;

-- The first item of a batch whose shape is wrong, and what is wrong with it.
CREATE OR REPLACE FUNCTION credits._batch_shape_problem(p_items jsonb, p_tenant text)
RETURNS TABLE (item bigint, problem text)
LANGUAGE sql STABLE
AS $$
  SELECT t.i - 1, credits._batch_item_shape(t.j, p_tenant)
    FROM pg_catalog.jsonb_array_elements(p_items) WITH ORDINALITY AS t (j, i)
   WHERE NOT credits._batch_item_ok(t.j, p_tenant) AND credits._batch_item_shape(t.j, p_tenant) IS NOT NULL
   ORDER BY t.i
   LIMIT 1
$$;

CREATE OR REPLACE FUNCTION credits.apply_batch(p_tenant text, p_items jsonb, p_atomic boolean DEFAULT true)
RETURNS TABLE (item int, op text, status text, sqlstate text, result jsonb)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n         int;
  v_op      text[];
  v_acct    bigint[];
  v_to      bigint[];
  v_amount  bigint[];
  v_key     text[];
  v_reason  text[];
  v_hold    bigint[];
  v_hkey    text[];
  v_hid     bigint;        -- commit and abort by hold_key: the idempotency key of the reserve that made the hold
  v_ttl     interval[];
  v_first   int[];
  v_known   boolean[];     -- the item's key was used before this batch, by its operation
  v_claim   jsonb[];       -- the item's key was used before by another operation: SX005
  v_holder  int[];         -- per first item of a key: the item that applied it
  v_dup     int[];         -- per item answering as a replay of an earlier item of this batch
  r_status  text[];
  r_result  jsonb[];
  r_problem jsonb[];
  -- journal rows, written together at the end
  e_item    int[] := '{}';
  e_account bigint[] := '{}';
  e_seq     bigint[] := '{}';
  e_kind    text[] := '{}';
  e_amount  bigint[] := '{}';
  e_balance bigint[] := '{}';
  e_reason  text[] := '{}';
  e_key     text[] := '{}';
  e_leg     smallint[] := '{}';
  e_cp      bigint[] := '{}';
  i         int;
  k         int;
  v_problem jsonb;
  v_bal     bigint;
  v_seq     bigint;
  v_bal2    bigint;
  v_seq2    bigint;
  v_ok      boolean;
  v_r       record;
  h         credits.holds;
  e         credits.entries;
  v_bad     record;
  v_written int := 0;
  v_hint    text;
  v_res     jsonb;
  v_todo    int[];
  f_item    int[];
  i_item    int[];
  i_leg     smallint[];
  i_entry   bigint[];
  i_at      timestamptz[];
BEGIN
  -- 1. The batch's shape: nothing is applied unless every item is well formed.
  IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' THEN
    PERFORM ops._fail('SX120', 'items must be a JSON array', jsonb_build_object('argument', 'items'));
  END IF;
  n := jsonb_array_length(p_items);
  IF n NOT BETWEEN 1 AND 1000 THEN
    PERFORM ops._fail('SX120', format('a batch has 1 to 1000 items, got %s', n),
                      jsonb_build_object('items', n, 'max_items', 1000));
  END IF;
  PERFORM credits._require_tenant(p_tenant);
  SELECT * INTO v_bad FROM credits._batch_shape_problem(p_items, p_tenant);
  IF FOUND THEN
    PERFORM ops._fail('SX120', format('item %s: %s', v_bad.item, v_bad.problem),
                      jsonb_build_object('item', v_bad.item, 'problem', v_bad.problem));
  END IF;

  -- 2. Typed arguments, and which item first used each key (for commit and
  -- abort: each hold, by id or by key). A key repeated with other arguments
  -- refuses the batch.
  WITH p AS (
    SELECT t.i::int AS i, t.j ->> 'op' AS op,
           coalesce(t.j ->> 'account_id', t.j ->> 'from_account')::bigint AS acct,
           (t.j ->> 'to_account')::bigint AS to_acct, (t.j ->> 'amount')::bigint AS amount,
           t.j ->> 'idempotency_key' AS key, t.j ->> 'reason' AS reason, (t.j ->> 'hold_id')::bigint AS hold,
           make_interval(secs => coalesce((t.j ->> 'ttl_seconds')::numeric, 300)::double precision) AS ttl,
           t.j ->> 'hold_key' AS hkey
      FROM jsonb_array_elements(p_items) WITH ORDINALITY t(j, i)),
  d AS (
    SELECT p.*, CASE WHEN p.op IN ('commit', 'abort') THEN coalesce('h' || p.hold, 'r' || p.hkey) ELSE 'k' || p.key END
             AS dk,
           jsonb_build_array(p.op, p.acct, p.to_acct, p.amount, p.reason, p.hold, p.hkey) AS args
      FROM p),
  f AS (
    SELECT d.*, coalesce(first_value(d.i) OVER w, d.i) AS first_i, first_value(d.args) OVER w AS first_args
      FROM d WINDOW w AS (PARTITION BY d.dk ORDER BY d.i))
  SELECT array_agg(f.op ORDER BY f.i), array_agg(f.acct ORDER BY f.i), array_agg(f.to_acct ORDER BY f.i),
         array_agg(f.amount ORDER BY f.i), array_agg(f.key ORDER BY f.i), array_agg(f.reason ORDER BY f.i),
         array_agg(f.hold ORDER BY f.i), array_agg(f.hkey ORDER BY f.i), array_agg(f.ttl ORDER BY f.i),
         array_agg(CASE WHEN f.dk IS NULL THEN f.i ELSE f.first_i END ORDER BY f.i),
         min(f.i) FILTER (WHERE f.dk IS NOT NULL AND f.args <> f.first_args)
    INTO v_op, v_acct, v_to, v_amount, v_key, v_reason, v_hold, v_hkey, v_ttl, v_first, k
    FROM f;
  IF k IS NOT NULL THEN
    PERFORM ops._fail('SX120',
      format('item %s repeats the %s of item %s with other arguments; a key names one request', k - 1,
             CASE WHEN v_op[k] IN ('commit', 'abort') THEN 'hold' ELSE 'idempotency key' END, v_first[k] - 1),
      jsonb_build_object('item', k - 1, 'first_item', v_first[k] - 1));
  END IF;

  -- 3. Claim every key as each single operation claims its own
  -- (credits._idem_key_claim): the keys' locks first, in lock-key order (so
  -- batches cannot deadlock on them), before any account lock, as single
  -- operations take them; then where each key was first used: by another
  -- operation, the item is refused (SX005); by the same, it answers as a
  -- replay (index probes per key, never a scan of the journal).
  PERFORM pg_advisory_xact_lock(s.h)
     FROM (SELECT DISTINCT credits._idem_lock_key(p_tenant, k.key) AS h
             FROM unnest(v_key) AS k (key)
            WHERE k.key IS NOT NULL AND credits._dist_key_problem(k.key) IS NULL) AS s
    ORDER BY s.h;
  v_known := array_fill(false, ARRAY[n]);
  v_claim := array_fill(NULL::jsonb, ARRAY[n]);
  FOR v_r IN
    SELECT u.i::int AS i, u.key, s.op AS used_by, s.facts,
           CASE u.op WHEN 'reserve' THEN 'hold' ELSE u.op END AS claim_op
      FROM unnest(v_op, v_key) WITH ORDINALITY AS u (op, key, i)
     CROSS JOIN LATERAL (SELECT x.op, x.facts FROM credits._idem_key_uses(p_tenant, u.key) AS x LIMIT 1) AS s
     WHERE u.op IN ('consume', 'grant', 'transfer', 'reserve') AND u.key IS NOT NULL
  LOOP
    IF v_r.used_by = v_r.claim_op THEN
      v_known[v_r.i] := true;
    ELSE
      v_claim[v_r.i] := credits._other_use_problem(v_r.key, v_r.used_by, v_r.facts);
    END IF;
  END LOOP;

  -- 4. Lock every account the batch touches, in account_id order.
  PERFORM 1 FROM credits.accounts a
   WHERE a.tenant_id = p_tenant
     AND a.account_id IN (SELECT unnest(v_acct) UNION SELECT unnest(v_to)
                          UNION SELECT x.account_id FROM credits.holds x
                                 WHERE x.tenant_id = p_tenant
                                   AND (x.hold_id = ANY (v_hold) OR x.idem_key = ANY (v_hkey)))
   ORDER BY a.account_id
     FOR UPDATE OF a;

  v_holder := array_fill(NULL::int, ARRAY[n]);
  v_dup := array_fill(NULL::int, ARRAY[n]);
  r_status := array_fill(NULL::text, ARRAY[n]);
  r_result := array_fill(NULL::jsonb, ARRAY[n]);
  r_problem := array_fill(NULL::jsonb, ARRAY[n]);

  -- 5. The common case at once: a batch of consumes only, each well formed,
  -- new and of its own key. One guarded UPDATE per account for the sum of its
  -- items (an account that has enough for the sum has enough for every
  -- prefix of it, in item order), with each item's balance and seq from a
  -- running sum. The items of accounts it does not match (unknown, not open,
  -- not enough for the sum, expired holds to release) go one by one below,
  -- in order; accounts are independent, so the outcome is the same.
  v_todo := ARRAY(SELECT g FROM generate_series(1, n) AS g);
  IF n > 1 AND 'consume' = ALL (v_op) AND NOT (true = ANY (v_known))
     AND NOT EXISTS (SELECT 1 FROM unnest(v_claim) AS c (problem) WHERE c.problem IS NOT NULL)
     AND NOT EXISTS (SELECT 1 FROM unnest(v_first) WITH ORDINALITY AS f (first_i, i) WHERE f.first_i <> f.i)
     AND NOT EXISTS (SELECT 1 FROM unnest(v_amount, v_key, v_reason) AS u (amount, key, reason)
                      WHERE coalesce(credits._movement_problem(u.amount, u.key, u.reason),
                                     credits._dist_key_problem(u.key)) IS NOT NULL) THEN
    WITH u AS (SELECT x.i::int AS i, x.acct, x.amount
                 FROM unnest(v_acct, v_amount) WITH ORDINALITY AS x (acct, amount, i)),
    g AS (SELECT u.acct, sum(u.amount)::bigint AS total, count(*) AS cnt FROM u GROUP BY u.acct),
    upd AS (
      UPDATE credits.accounts AS a SET balance = a.balance - g.total, entry_seq = a.entry_seq + g.cnt
        FROM g
       WHERE a.account_id = g.acct AND a.tenant_id = p_tenant AND a.status = 'open'
         AND a.balance - a.held >= g.total
      RETURNING a.account_id, a.balance + g.total AS start_balance, a.entry_seq - g.cnt AS start_seq),
    r AS (SELECT u.i, u.acct, u.amount, (upd.start_balance - sum(u.amount) OVER w)::bigint AS bal,
                 upd.start_seq + row_number() OVER w AS seq
            FROM u INNER JOIN upd ON upd.account_id = u.acct
          WINDOW w AS (PARTITION BY u.acct ORDER BY u.i))
    SELECT coalesce(array_agg(r.i ORDER BY r.i), '{}'),
           e_item || coalesce(array_agg(r.i ORDER BY r.i), '{}'),
           e_account || coalesce(array_agg(r.acct ORDER BY r.i), '{}'),
           e_seq || coalesce(array_agg(r.seq ORDER BY r.i), '{}'),
           e_kind || coalesce(array_agg('consume'::text ORDER BY r.i), '{}'),
           e_amount || coalesce(array_agg(-r.amount ORDER BY r.i), '{}'),
           e_balance || coalesce(array_agg(r.bal ORDER BY r.i), '{}'),
           e_reason || coalesce(array_agg(v_reason[r.i] ORDER BY r.i), '{}'),
           e_key || coalesce(array_agg(v_key[r.i] ORDER BY r.i), '{}'),
           e_leg || coalesce(array_agg(0::smallint ORDER BY r.i), '{}'),
           e_cp || coalesce(array_agg(NULL::bigint ORDER BY r.i), '{}')
      INTO f_item, e_item, e_account, e_seq, e_kind, e_amount, e_balance, e_reason, e_key, e_leg, e_cp
      FROM r;
    FOREACH k IN ARRAY f_item LOOP
      r_status[k] := 'applied';
    END LOOP;
    v_todo := ARRAY(SELECT g FROM generate_series(1, n) AS g EXCEPT SELECT unnest(f_item) ORDER BY 1);
  END IF;

  -- 6. The (other) items, one by one in order.
  FOREACH i IN ARRAY v_todo LOOP
    k := v_first[i];
    IF k <> i AND v_holder[k] IS NOT NULL THEN
      -- The same request again, already applied (or replayed) by an earlier item.
      v_dup[i] := v_holder[k]; r_status[i] := 'replayed';
      CONTINUE;
    END IF;
    v_problem := NULL;
    IF v_hold[i] IS NULL AND v_hkey[i] IS NOT NULL THEN
      -- By hold_key: the hold its reserve made, by an earlier item of this
      -- batch or an earlier request (its account is locked: step 4).
      v_hid := NULL;
      SELECT x.hold_id INTO v_hid FROM credits.holds x WHERE x.tenant_id = p_tenant AND x.idem_key = v_hkey[i];
      v_hold[i] := v_hid;
    END IF;
    CASE v_op[i]
    WHEN 'consume', 'grant' THEN
      v_problem := coalesce(credits._movement_problem(v_amount[i], v_key[i], v_reason[i]),
                            credits._dist_key_problem(v_key[i]), v_claim[i]);
      IF v_problem IS NULL AND v_known[i] THEN
        SELECT r.* INTO v_r FROM credits._entry_replay(p_tenant, v_key[i], v_op[i], v_acct[i],
          CASE v_op[i] WHEN 'consume' THEN -v_amount[i] ELSE v_amount[i] END, v_reason[i], NULL) r;
        v_problem := v_r.problem; e := v_r.e;
        IF v_problem IS NULL THEN
          r_status[i] := 'replayed';
          r_result[i] := jsonb_build_object('entry_id', e.entry_id, 'account_id', e.account_id, 'amount', e.amount,
            'balance_after', e.balance_after, 'seq', e.seq, 'created_at', e.created_at, 'replayed', true);
        END IF;
      ELSIF v_problem IS NULL AND v_op[i] = 'consume' THEN
        v_ok := false;
        LOOP
          UPDATE credits.accounts a
             SET balance = a.balance - v_amount[i], entry_seq = a.entry_seq + 1
           WHERE a.account_id = v_acct[i] AND a.tenant_id = p_tenant AND a.status = 'open'
             AND a.balance - a.held >= v_amount[i]
          RETURNING a.balance, a.entry_seq INTO v_bal, v_seq;
          EXIT WHEN FOUND;
          v_problem := credits._debit_problem(p_tenant, v_acct[i], v_amount[i]);
          -- Expired holds still counted in held: release them, try once more.
          EXIT WHEN v_ok OR v_problem ->> 'sqlstate' <> 'SX004'
            OR credits._release_expired_holds_at(v_acct[i], now()) = 0;
          v_ok := true; v_problem := NULL;
        END LOOP;
      ELSIF v_problem IS NULL THEN
        UPDATE credits.accounts a
           SET balance = a.balance + v_amount[i], entry_seq = a.entry_seq + 1
         WHERE a.account_id = v_acct[i] AND a.tenant_id = p_tenant AND a.status <> 'closed'
           AND a.balance <= 9223372036854775807 - v_amount[i]
        RETURNING a.balance, a.entry_seq INTO v_bal, v_seq;
        IF NOT FOUND THEN
          v_problem := credits._credit_problem(p_tenant, v_acct[i], v_amount[i]);
        END IF;
      END IF;
      IF v_problem IS NULL AND r_status[i] IS NULL THEN
        e_item := e_item || i; e_account := e_account || v_acct[i]; e_seq := e_seq || v_seq;
        e_kind := e_kind || v_op[i];
        e_amount := e_amount || CASE v_op[i] WHEN 'consume' THEN -v_amount[i] ELSE v_amount[i] END;
        e_balance := e_balance || v_bal; e_reason := e_reason || v_reason[i]; e_key := e_key || v_key[i];
        e_leg := e_leg || 0::smallint; e_cp := e_cp || NULL::bigint;
        r_status[i] := 'applied';  -- its result is built with its entry, at the end
      END IF;

    WHEN 'transfer' THEN
      v_problem := coalesce(credits._transfer_problem(v_acct[i], v_to[i], v_amount[i], v_key[i], v_reason[i]),
                            credits._dist_key_problem(v_key[i]), v_claim[i]);
      IF v_problem IS NULL AND v_known[i] THEN
        SELECT r.* INTO v_r FROM credits._entry_replay(p_tenant, v_key[i], 'transfer_out', v_acct[i], -v_amount[i],
                                                      v_reason[i], v_to[i]) r;
        v_problem := v_r.problem; e := v_r.e;
        IF v_problem IS NULL THEN
          r_status[i] := 'replayed';
          SELECT jsonb_build_object('debit_entry_id', e.entry_id, 'credit_entry_id', x.entry_id,
                   'from_account', e.account_id, 'to_account', e.counterparty, 'amount', -e.amount,
                   'from_balance_after', e.balance_after, 'to_balance_after', x.balance_after,
                   'created_at', e.created_at, 'replayed', true)
            INTO v_res
            FROM credits.entries x WHERE x.tenant_id = p_tenant AND x.idem_key = v_key[i] AND x.leg = 1;
          r_result[i] := v_res;
        END IF;
      ELSIF v_problem IS NULL THEN
        -- The sides in the single transfer's order (lower account first), so
        -- a refusal names the same side.
        IF v_acct[i] > v_to[i] THEN
          UPDATE credits.accounts a
             SET balance = a.balance + v_amount[i], entry_seq = a.entry_seq + 1
           WHERE a.account_id = v_to[i] AND a.tenant_id = p_tenant AND a.status <> 'closed'
             AND a.balance <= 9223372036854775807 - v_amount[i]
          RETURNING a.balance, a.entry_seq INTO v_bal2, v_seq2;
          IF NOT FOUND THEN
            v_problem := credits._credit_problem(p_tenant, v_to[i], v_amount[i]);
          END IF;
        END IF;
        IF v_problem IS NULL THEN
          v_ok := false;
          LOOP
            UPDATE credits.accounts a
               SET balance = a.balance - v_amount[i], entry_seq = a.entry_seq + 1
             WHERE a.account_id = v_acct[i] AND a.tenant_id = p_tenant AND a.status = 'open'
               AND a.balance - a.held >= v_amount[i]
            RETURNING a.balance, a.entry_seq INTO v_bal, v_seq;
            EXIT WHEN FOUND;
            v_problem := credits._debit_problem(p_tenant, v_acct[i], v_amount[i]);
            EXIT WHEN v_ok OR v_problem ->> 'sqlstate' <> 'SX004'
              OR credits._release_expired_holds_at(v_acct[i], now()) = 0;
            v_ok := true; v_problem := NULL;
          END LOOP;
          IF v_problem IS NOT NULL AND v_acct[i] > v_to[i] THEN
            -- Undo the credit (we hold the lock).
            UPDATE credits.accounts a SET balance = a.balance - v_amount[i], entry_seq = a.entry_seq - 1
             WHERE a.account_id = v_to[i];
          END IF;
        END IF;
        IF v_problem IS NULL AND v_acct[i] < v_to[i] THEN
          UPDATE credits.accounts a
             SET balance = a.balance + v_amount[i], entry_seq = a.entry_seq + 1
           WHERE a.account_id = v_to[i] AND a.tenant_id = p_tenant AND a.status <> 'closed'
             AND a.balance <= 9223372036854775807 - v_amount[i]
          RETURNING a.balance, a.entry_seq INTO v_bal2, v_seq2;
          IF NOT FOUND THEN
            -- Undo the debit (we hold the lock), say why the credit side refused.
            UPDATE credits.accounts a SET balance = a.balance + v_amount[i], entry_seq = a.entry_seq - 1
             WHERE a.account_id = v_acct[i];
            v_problem := credits._credit_problem(p_tenant, v_to[i], v_amount[i]);
          END IF;
        END IF;
        IF v_problem IS NULL THEN
          e_item := e_item || i || i; e_account := e_account || v_acct[i] || v_to[i];
          e_seq := e_seq || v_seq || v_seq2; e_kind := e_kind || 'transfer_out'::text || 'transfer_in'::text;
          e_amount := e_amount || -v_amount[i] || v_amount[i]; e_balance := e_balance || v_bal || v_bal2;
          e_reason := e_reason || v_reason[i] || v_reason[i]; e_key := e_key || v_key[i] || v_key[i];
          e_leg := e_leg || 0::smallint || 1::smallint; e_cp := e_cp || v_to[i] || v_acct[i];
          r_status[i] := 'applied';
          r_result[i] := jsonb_build_object('from_account', v_acct[i], 'to_account', v_to[i], 'amount', v_amount[i],
            'from_balance_after', v_bal, 'to_balance_after', v_bal2, 'replayed', false);
        END IF;
      END IF;

    WHEN 'reserve' THEN
      v_problem := coalesce(credits._reserve_problem(v_amount[i], v_key[i], v_reason[i], v_ttl[i]), v_claim[i]);
      h := NULL;
      IF v_problem IS NULL AND NOT v_known[i] THEN
        v_ok := false;
        LOOP
          UPDATE credits.accounts a SET held = a.held + v_amount[i]
           WHERE a.account_id = v_acct[i] AND a.tenant_id = p_tenant AND a.status = 'open'
             AND a.balance - a.held >= v_amount[i];
          EXIT WHEN FOUND;
          v_problem := credits._debit_problem(p_tenant, v_acct[i], v_amount[i]);
          EXIT WHEN v_ok OR v_problem ->> 'sqlstate' <> 'SX004'
            OR credits._release_expired_holds_at(v_acct[i], now()) = 0;
          v_ok := true; v_problem := NULL;
        END LOOP;
        IF v_problem IS NULL THEN
          INSERT INTO credits.holds AS x (tenant_id, account_id, amount, reason, idem_key, expires_at)
          VALUES (p_tenant, v_acct[i], v_amount[i], v_reason[i], v_key[i], now() + v_ttl[i])
          ON CONFLICT ON CONSTRAINT holds_idem_unique DO NOTHING
          RETURNING x.* INTO h;
          IF FOUND THEN
            r_status[i] := 'applied';
          ELSE
            -- Key taken meanwhile by a concurrent call: undo, answer as its replay.
            UPDATE credits.accounts a SET held = a.held - v_amount[i] WHERE a.account_id = v_acct[i];
            v_known[i] := true;
          END IF;
        END IF;
      END IF;
      IF v_problem IS NULL AND v_known[i] THEN
        SELECT r.* INTO v_r FROM credits._hold_replay(p_tenant, v_key[i], v_acct[i], v_amount[i], v_reason[i]) r;
        v_problem := v_r.problem; h := v_r.h;
        r_status[i] := 'replayed';
      END IF;
      IF v_problem IS NULL THEN
        r_result[i] := jsonb_build_object('hold_id', h.hold_id, 'account_id', h.account_id, 'amount', h.amount,
          'status', h.status, 'expires_at', h.expires_at, 'created_at', h.created_at,
          'replayed', r_status[i] = 'replayed');
      END IF;

    WHEN 'commit' THEN
      v_problem := credits._commit_problem(v_amount[i], v_reason[i]);
      IF v_problem IS NULL THEN
        UPDATE credits.holds x SET status = 'captured', captured = coalesce(v_amount[i], x.amount), resolved_at = now()
         WHERE x.hold_id = v_hold[i] AND x.tenant_id = p_tenant AND x.status = 'active' AND x.expires_at > now()
           AND x.dist_tx_id IS NULL AND coalesce(v_amount[i], x.amount) <= x.amount
        RETURNING x.* INTO h;
        IF FOUND THEN
          -- held included this hold, so balance >= held >= amount >= captured: no guard needed.
          UPDATE credits.accounts a
             SET balance = a.balance - h.captured, held = a.held - h.amount, entry_seq = a.entry_seq + 1
           WHERE a.account_id = h.account_id
          RETURNING a.balance, a.entry_seq INTO v_bal, v_seq;
          e_item := e_item || i; e_account := e_account || h.account_id; e_seq := e_seq || v_seq;
          e_kind := e_kind || 'capture'::text; e_amount := e_amount || -h.captured; e_balance := e_balance || v_bal;
          e_reason := e_reason || coalesce(v_reason[i], h.reason); e_key := e_key || h.idem_key;
          e_leg := e_leg || 2::smallint; e_cp := e_cp || NULL::bigint;
          r_status[i] := 'applied';
          r_result[i] := jsonb_build_object('hold_id', h.hold_id, 'account_id', h.account_id, 'amount', h.amount,
            'captured', h.captured, 'released', h.amount - h.captured, 'balance_after', v_bal, 'seq', v_seq,
            'resolved_at', h.resolved_at, 'replayed', false);
        ELSE
          SELECT r.* INTO v_r FROM credits._hold_problem(p_tenant, v_hold[i], 'commit', v_amount[i]) r;
          v_problem := v_r.problem; h := v_r.h;
          IF v_problem IS NULL THEN
            SELECT * INTO e FROM credits.entries x
             WHERE x.tenant_id = h.tenant_id AND x.idem_key = h.idem_key AND x.leg = 2;
            r_status[i] := 'replayed';
            r_result[i] := jsonb_build_object('hold_id', h.hold_id, 'account_id', h.account_id, 'amount', h.amount,
              'captured', h.captured, 'released', h.amount - h.captured, 'entry_id', e.entry_id,
              'balance_after', e.balance_after, 'seq', e.seq, 'resolved_at', h.resolved_at, 'replayed', true);
          END IF;
        END IF;
      END IF;

    WHEN 'abort' THEN
      UPDATE credits.holds x SET status = 'voided', resolved_at = now()
       WHERE x.hold_id = v_hold[i] AND x.tenant_id = p_tenant AND x.status = 'active' AND x.expires_at > now()
         AND x.dist_tx_id IS NULL
      RETURNING x.* INTO h;
      IF FOUND THEN
        UPDATE credits.accounts a SET held = a.held - h.amount WHERE a.account_id = h.account_id;
        r_status[i] := 'applied';
      ELSE
        SELECT r.* INTO v_r FROM credits._hold_problem(p_tenant, v_hold[i], 'abort', NULL) r;
        v_problem := v_r.problem; h := v_r.h;
        r_status[i] := 'replayed';
      END IF;
      IF v_problem IS NULL THEN
        r_result[i] := jsonb_build_object('hold_id', h.hold_id, 'account_id', h.account_id, 'amount', h.amount,
          'status', h.status, 'resolved_at', h.resolved_at, 'replayed', r_status[i] = 'replayed');
      END IF;
    END CASE;
    IF v_hold[i] IS NULL AND v_hkey[i] IS NOT NULL THEN
      v_problem := ops._problem('SX101', format('no hold was reserved with idempotency key %s', v_hkey[i]),
                                jsonb_build_object('hold_key', v_hkey[i]));
    END IF;

    IF v_problem IS NOT NULL THEN
      IF p_atomic THEN
        PERFORM ops._fail('SX121',
          format('item %s (%s) refused: %s', i - 1, v_op[i], v_problem ->> 'message'),
          jsonb_build_object('item', i - 1, 'op', v_op[i], 'sqlstate', v_problem ->> 'sqlstate',
                             'name', (SELECT c.name FROM ops.error_catalog AS c
                                       WHERE c.sqlstate = v_problem ->> 'sqlstate'),
                             'message', v_problem ->> 'message', 'detail', v_problem -> 'detail'));
      END IF;
      r_status[i] := 'refused'; r_problem[i] := v_problem; r_result[i] := NULL;
    ELSIF r_status[i] IN ('applied', 'replayed') THEN
      v_holder[k] := i;
    END IF;
  END LOOP;

  -- 7. The journal rows of every applied item, in item order; the statement
  -- trigger audits them (the hint shieldx.ledger_bulk picks it over the row
  -- trigger: see audit._log_ledger_row). A key taken meanwhile by a concurrent
  -- call (after step 4) is not written twice: the batch fails whole and may be
  -- retried.
  IF cardinality(e_item) > 0 THEN
    v_hint := coalesce(pg_catalog.current_setting('shieldx.ledger_bulk', true), '');
    PERFORM pg_catalog.set_config('shieldx.ledger_bulk', 'on', true);
    WITH ins AS (
      INSERT INTO credits.entries AS x
        (account_id, tenant_id, seq, kind, amount, balance_after, reason, idem_key, leg, counterparty)
      SELECT u.account_id, p_tenant, u.seq, u.kind, u.amount, u.balance, u.reason, u.key, u.leg, u.cp
        FROM unnest(e_item, e_account, e_seq, e_kind, e_amount, e_balance, e_reason, e_key, e_leg, e_cp)
             AS u (item, account_id, seq, kind, amount, balance, reason, key, leg, cp)
       ORDER BY u.item, u.leg
      ON CONFLICT ON CONSTRAINT entries_idem_unique DO NOTHING
      RETURNING x.entry_id, x.idem_key, x.leg, x.created_at)
    SELECT array_agg(u.item), array_agg(ins.leg), array_agg(ins.entry_id), array_agg(ins.created_at)
      INTO i_item, i_leg, i_entry, i_at
      FROM ins
     INNER JOIN unnest(e_item, e_key, e_leg) AS u (item, key, leg) ON u.key = ins.idem_key AND u.leg = ins.leg;
    PERFORM pg_catalog.set_config('shieldx.ledger_bulk', v_hint, true);
    v_written := coalesce(cardinality(i_item), 0);
    IF v_written < cardinality(e_item) THEN
      PERFORM ops._fail('SX122', 'an idempotency key of this batch was used by a concurrent call; retry the batch',
                        jsonb_build_object('entries', cardinality(e_item) - v_written));
    END IF;
  END IF;

  -- 8. One row per item: an applied item's result with its journal entries'
  -- ids; a repeated request's, that of the item it repeats.
  RETURN QUERY
    WITH ent AS (
      SELECT x.item, max(x.entry_id) FILTER (WHERE x.leg <> 1) AS e0, max(x.entry_id) FILTER (WHERE x.leg = 1) AS e1,
             max(x.created_at) FILTER (WHERE x.leg = 0) AS created_at
        FROM unnest(i_item, i_leg, i_entry, i_at) AS x (item, leg, entry_id, created_at)
       GROUP BY x.item),
    pend AS (
      SELECT p.item, p.account_id, p.amount, p.balance, p.seq
        FROM unnest(e_item, e_account, e_amount, e_balance, e_seq, e_leg)
             AS p (item, account_id, amount, balance, seq, leg)
       WHERE p.leg = 0),
    b AS (
      SELECT u.i::int AS i, u.op, u.status, u.problem, u.dup,
             CASE WHEN u.problem IS NOT NULL OR u.status <> 'applied' THEN u.res
                  WHEN u.op IN ('consume', 'grant') THEN
                    jsonb_build_object('entry_id', ent.e0, 'account_id', pend.account_id, 'amount', pend.amount,
                                       'balance_after', pend.balance, 'seq', pend.seq, 'created_at', ent.created_at,
                                       'replayed', false)
                  WHEN u.op = 'transfer' THEN
                    u.res || jsonb_build_object('debit_entry_id', ent.e0, 'credit_entry_id', ent.e1,
                                                'created_at', ent.created_at)
                  WHEN u.op = 'commit' THEN u.res || jsonb_build_object('entry_id', ent.e0)
                  ELSE u.res
             END AS res
        FROM unnest(v_op, r_status, r_result, r_problem, v_dup) WITH ORDINALITY AS u (op, status, res, problem, dup, i)
        LEFT JOIN ent ON ent.item = u.i
        LEFT JOIN pend ON pend.item = u.i)
    SELECT b.i - 1, b.op, b.status, b.problem ->> 'sqlstate',
           CASE WHEN b.problem IS NOT NULL THEN
                  jsonb_build_object('error', c.name, 'status', c.http_status, 'title', c.title,
                                     'message', b.problem ->> 'message', 'detail', b.problem -> 'detail')
                WHEN b.dup IS NOT NULL THEN d.res || '{"replayed": true}'::jsonb
                ELSE b.res END
      FROM b
      LEFT JOIN b AS d ON d.i = b.dup
      LEFT JOIN ops.error_catalog AS c ON c.sqlstate = b.problem ->> 'sqlstate'
     ORDER BY b.i;
END
$$;

COMMENT ON FUNCTION credits.apply_batch(text, jsonb, boolean) IS
  'Apply up to 1,000 ledger operations (consume, grant, transfer, reserve, commit, abort) of one tenant in order, '
  'in one transaction, each decided as its single operation would be; one row per item (0-based) with status '
  'applied, replayed or refused and the result or named error. p_atomic: the first refusal raises SX121 and '
  'nothing is applied. Commit and abort name their hold by hold_id or by hold_key (the idempotency key of its '
  'reserve, in this batch or before). No subtransactions.';
