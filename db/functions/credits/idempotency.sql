-- Idempotency: a key names one call per tenant. The answering entry (leg 0)
-- records the call's arguments, so a replay is recognised, and a key reused
-- with other arguments is refused, without any extra table or write.
-- _entry_replay answers with the entry (a replay), a problem (SX005: the key
-- was used with other arguments), or neither (the key is unused);
-- _replayed_entry raises the problem.
CREATE OR REPLACE FUNCTION credits._entry_replay(
  p_tenant text, p_idem_key text, p_kind text, p_account bigint, p_amount bigint,
  p_reason text, p_counterparty bigint, OUT e credits.entries, OUT problem jsonb)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  SELECT * INTO e FROM credits.entries x
   WHERE x.tenant_id = p_tenant AND x.idem_key = p_idem_key AND x.leg = 0;
  IF FOUND AND e.kind <> p_kind THEN
    -- The answering entry of another operation (the journal's unique key met it).
    problem := credits._other_use_problem(p_idem_key, credits._entry_op(e.kind),
                                          jsonb_build_object('entry_id', e.entry_id));
    e := NULL;
  ELSIF FOUND AND (e.account_id <> p_account OR e.amount <> p_amount
                   OR e.reason IS DISTINCT FROM p_reason OR e.counterparty IS DISTINCT FROM p_counterparty) THEN
    problem := ops._problem('SX005',
      format('idempotency key %L was used for a %s of %s on account %s', p_idem_key, e.kind, abs(e.amount), e.account_id),
      jsonb_build_object('entry_id', e.entry_id));
    e := NULL;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION credits._replayed_entry(
  p_tenant text, p_idem_key text, p_kind text, p_account bigint, p_amount bigint,
  p_reason text, p_counterparty bigint)
RETURNS credits.entries
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_r record;
BEGIN
  SELECT r.* INTO v_r
    FROM credits._entry_replay(p_tenant, p_idem_key, p_kind, p_account, p_amount, p_reason, p_counterparty) r;
  IF v_r.problem IS NOT NULL THEN
    PERFORM ops._fail_problem(v_r.problem);
  END IF;
  RETURN v_r.e;
END
$$;

-- An idempotency key names one call of a tenant, whatever the operation:
-- the key of a consume cannot also open an account, make a hold, a transfer
-- or an API key. A key's first use is in one of two places: the journal, for
-- the calls that write entries (the answering entry, leg 0, of a consume,
-- grant or transfer), and credits.idem_keys for the others (an account, a
-- hold, an API key: triggers on their tables add it). Every keyed call of a
-- tenant (credits.create_account, grant_credits, consume, transfer, reserve;
-- vault.top_up through grant_credits; auth.create_key, auth.rotate_key)
-- claims its key first, before anything is written (credits._idem_key_claim:
-- calls with one key wait for each other on a transaction-level advisory
-- lock, no write), then the key's first use decides: a key used by another
-- operation is SX005; the same operation goes on to compare its arguments.
-- - The calls that do not write the journal look for the key in both places
--   (credits._idem_key_problem) right after the claim (credits._claim_idem_key).
-- - The calls that write it (the hot path) look inside their guarded UPDATE,
--   an index probe in a statement they run anyway, not a statement of their
--   own. A consume or grant writes one entry: its UPDATE looks only in
--   credits.idem_keys (credits._idem_key_kept), and its INSERT lets the
--   journal's unique key find an earlier entry (ON CONFLICT DO NOTHING); then
--   it takes its balance change back under the row lock it still holds. A
--   transfer writes two entries in one INSERT, where ON CONFLICT could skip
--   one and keep the other in an append-only journal: its first UPDATE looks
--   in both places (credits._idem_key_uses), so it matches only for a new
--   key, and its INSERT needs no ON CONFLICT. The key stays the caller's
--   until commit (the claim's lock). When nothing was applied they ask why:
--   a replay or another operation's entry (credits._entry_replay), another
--   operation's key (credits._idem_key_problem), or the funds.
-- Keys starting with "dist:" name the legs of distributed transactions.
-- The pieces, shared with credits.apply_batch (which claims all its items'
-- keys at once, in lock order): the reserved prefix, the lock's key, and
-- where each key was first used.
CREATE OR REPLACE FUNCTION credits._dist_key_problem(p_idem_key text)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.left(p_idem_key, 5) = 'dist:' THEN
    ops._problem('SX007', 'idempotency keys starting with "dist:" are reserved',
                 pg_catalog.jsonb_build_object('argument', 'idempotency_key'))
  END
$$;

-- STABLE, not IMMUTABLE: the planner would evaluate an IMMUTABLE call with
-- constant arguments through the function manager instead of inlining it.
CREATE OR REPLACE FUNCTION credits._idem_lock_key(p_tenant text, p_idem_key text)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.hashtextextended('shieldx.idem:' || coalesce(p_tenant, '') || ':' || p_idem_key, 0)
$$;

-- The operation a journal entry's kind answers for (a transfer writes transfer_out as leg 0).
CREATE OR REPLACE FUNCTION credits._entry_op(p_kind text)
RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE p_kind WHEN 'transfer_out' THEN 'transfer' ELSE p_kind END
$$;

-- The key's use by a call that does not write the journal.
CREATE OR REPLACE FUNCTION credits._idem_key_kept(p_tenant text, p_idem_key text)
RETURNS TABLE (op text, facts jsonb)
LANGUAGE sql STABLE
AS $$
  SELECT k.op, pg_catalog.jsonb_build_object(k.op || '_id', CASE k.op WHEN 'key' THEN pg_catalog.to_jsonb(k.ref)
                                                             ELSE pg_catalog.to_jsonb(k.ref::bigint) END)
    FROM credits.idem_keys AS k WHERE k.tenant_id = p_tenant AND k.idem_key = p_idem_key
$$;

-- The key's use by any call: kept above, or the journal's answering entry.
CREATE OR REPLACE FUNCTION credits._idem_key_uses(p_tenant text, p_idem_key text)
RETURNS TABLE (op text, facts jsonb)
LANGUAGE sql STABLE
AS $$
  SELECT k.op, k.facts FROM credits._idem_key_kept(p_tenant, p_idem_key) AS k
  UNION ALL
  SELECT credits._entry_op(e.kind), pg_catalog.jsonb_build_object('entry_id', e.entry_id)
    FROM credits.entries AS e WHERE e.tenant_id = p_tenant AND e.idem_key = p_idem_key AND e.leg = 0
$$;

CREATE OR REPLACE FUNCTION credits._other_use_problem(p_idem_key text, p_used_by text, p_facts jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT ops._problem('SX005',
    pg_catalog.format('idempotency key %L was already used for another operation (%s)', p_idem_key, p_used_by),
    p_facts || pg_catalog.jsonb_build_object('operation', p_used_by))
$$;

-- Claim a key: SX007 for a "dist:" key, else take the key's lock and answer
-- NULL. SQL, so a caller's expression inlines it (no statement, no snapshot
-- of its own); pg_advisory_xact_lock returns void, hence the CASE.
CREATE OR REPLACE FUNCTION credits._idem_key_claim(p_tenant text, p_idem_key text)
RETURNS jsonb
LANGUAGE sql
AS $$
  SELECT coalesce(credits._dist_key_problem(p_idem_key),
                  CASE WHEN pg_catalog.pg_advisory_xact_lock(credits._idem_lock_key(p_tenant, p_idem_key))::text = ''
                       THEN NULL::jsonb END)
$$;

-- SX005 if the key's first use was by another operation than p_op, else
-- NULL. After the claim: VOLATILE, so its query takes a fresh snapshot, which
-- sees a call with this key that committed while the caller waited for the
-- lock (a STABLE function would read the caller's statement's snapshot).
CREATE OR REPLACE FUNCTION credits._idem_key_problem(p_tenant text, p_idem_key text, p_op text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_op    text;
  v_facts jsonb;
BEGIN
  SELECT u.op, u.facts INTO v_op, v_facts FROM credits._idem_key_uses(p_tenant, p_idem_key) AS u LIMIT 1;
  IF v_op <> p_op THEN
    RETURN credits._other_use_problem(p_idem_key, v_op, v_facts);
  END IF;
  RETURN NULL;
END
$$;

-- The claim of a call that does not write the journal (an account, a hold, an
-- API key): take the key, then raise SX005 if another operation used it
-- first. Its problem is looked up by a VOLATILE function, so after the lock.
CREATE OR REPLACE FUNCTION credits._claim_idem_key(p_tenant text, p_idem_key text, p_op text)
RETURNS void
LANGUAGE sql
AS $$
  SELECT ops._fail_problem(coalesce(credits._idem_key_claim(p_tenant, p_idem_key),
                                    credits._idem_key_problem(p_tenant, p_idem_key, p_op)))
$$;
