-- Verification. audit.verify() recomputes every chain (O(n)); with
-- p_incremental it starts each chain at the last checkpoint's head instead.
-- Both also check every checkpoint's signature and the chain of checkpoints,
-- that the last checkpoint's heads are still in the log, every anchor's
-- signature, and (p_ledger) that the journal and its audit chain agree. They
-- name the FIRST broken entry (stream, seq) and why; audit.verify_streams()
-- lists the first break of every broken chain.

-- Private signatures of earlier versions (databases migrated before the range
-- arguments). The public audit.verify_streams(boolean, boolean) is dropped by
-- migration 0511, audit.verify(boolean, boolean) and
-- audit.verify_streams(boolean, boolean, text, text) (before p_journal) by
-- 0700_audit_signatures: a function file never drops a public function.
DROP FUNCTION IF EXISTS audit._chain_problems(bigint);
DROP FUNCTION IF EXISTS audit._ledger_problems(bigint);
DROP FUNCTION IF EXISTS audit._ledger_problems(bigint, text, text);
DROP FUNCTION IF EXISTS audit._missing_heads(bigint, jsonb);  -- before p_pinned

-- Where a chain's first examined entry must link to: genesis, a signed
-- anchor left by retention, or (incremental) the checkpointed head itself.
CREATE OR REPLACE FUNCTION audit._start_problem(p_stream text, p_seq bigint, p_prev bytea, p_hash bytea, p_since bigint)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  v_cp_seq  bigint;
  v_cp_hash bytea;
  v_anchor  bytea;
BEGIN
  IF p_since IS NOT NULL THEN
    SELECT h.seq, h.hash INTO v_cp_seq, v_cp_hash FROM audit.checkpoint_heads h
     WHERE h.checkpoint_id = p_since AND h.stream = p_stream;
    IF p_seq = v_cp_seq THEN
      RETURN CASE WHEN p_hash = v_cp_hash THEN NULL
                  ELSE format('entry differs from signed checkpoint %s (chain rewritten)', p_since) END;
    END IF;
  END IF;
  IF p_seq = 1 THEN
    RETURN CASE WHEN p_prev = audit._genesis(p_stream) THEN NULL ELSE 'first entry does not start this chain' END;
  END IF;
  SELECT a.hash INTO v_anchor FROM audit.anchors a WHERE a.stream = p_stream AND a.seq = p_seq - 1;
  IF v_anchor IS NULL THEN
    RETURN format('entries 1 to %s are missing (no retention anchor)', p_seq - 1);
  ELSIF v_anchor <> p_prev THEN
    RETURN 'chain does not continue from its retention anchor';
  END IF;
  RETURN NULL;
END
$$;

-- Link problems of the chains: every entry follows its predecessor (seq + 1,
-- prev_hash = its hash) and each chain starts at genesis, its anchor, or
-- (p_since) the checkpointed head. A window over narrow rows in index order.
-- Plain SQL, so it inlines into audit._chain_problems' parallel plan.
CREATE OR REPLACE FUNCTION audit._link_problems(p_since bigint, p_from text, p_to text)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT w.stream::text, w.seq, w.logged_at, w.problem
    FROM (SELECT s.stream, s.seq, s.logged_at,
                 CASE
                   WHEN s.p_seq IS NULL THEN audit._start_problem(s.stream, s.seq, s.prev_hash, s.hash, p_since)
                   WHEN s.seq <> s.p_seq + 1 THEN format('entries %s to %s are missing', s.p_seq + 1, s.seq - 1)
                   WHEN s.prev_hash <> s.p_hash THEN 'chain broken: prev_hash is not the previous entry''s hash'
                 END AS problem
            FROM (SELECT l.stream, l.seq, l.logged_at, l.prev_hash, l.hash,
                         lag(l.seq) OVER w AS p_seq, lag(l.hash) OVER w AS p_hash
                    FROM audit.log l
                   WHERE (p_from IS NULL OR l.stream >= p_from) AND (p_to IS NULL OR l.stream < p_to)
                  WINDOW w AS (PARTITION BY l.stream ORDER BY l.seq)) s) w
   WHERE w.problem IS NOT NULL
$$;

-- Problems of the chains, in two passes that each suit the executor:
--   1. every entry's hash is recomputed from its content: a plain scan
--      spread over parallel workers;
--   2. the links (audit._link_problems): a window in index order.
-- In a full verify both run at once (a Parallel Append: one process walks the
-- links while the others hash), so a verify costs max(pass 1, pass 2) of
-- wall time on a multi-core server rather than their sum.
-- Callers take the lowest seq per stream as its first break.
CREATE OR REPLACE FUNCTION audit._chain_problems(p_since bigint, p_from text DEFAULT NULL, p_to text DEFAULT NULL)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
-- Reading chains in primary-key order beats sorting the whole log; the
-- parallel plan is wanted even though the planner prices workers high; JIT
-- compiles for longer than it saves on these expressions.
SET enable_sort = off
SET parallel_setup_cost = 0
SET parallel_tuple_cost = 0
SET jit = off
AS $$
BEGIN
  IF p_since IS NOT NULL THEN
    -- Incremental: per chain, only the entries from the checkpoint's head on
    -- (index range scans): O(chains + new entries).
    RETURN QUERY
      WITH r AS (
        SELECT hs.stream, coalesce(h.seq, 1) AS from_seq
          FROM audit._heads() hs
          LEFT JOIN audit.checkpoint_heads h ON h.checkpoint_id = p_since AND h.stream = hs.stream
         WHERE (p_from IS NULL OR hs.stream >= p_from) AND (p_to IS NULL OR hs.stream < p_to))
      SELECT w.stream::text, w.seq, w.logged_at, w.problem
        FROM r CROSS JOIN LATERAL (
          SELECT s.stream, s.seq, s.logged_at,
                 CASE
                   WHEN s.altered THEN 'entry altered: its hash does not match its content'
                   WHEN s.p_seq IS NULL THEN audit._start_problem(s.stream, s.seq, s.prev_hash, s.hash, p_since)
                   WHEN s.seq <> s.p_seq + 1 THEN format('entries %s to %s are missing', s.p_seq + 1, s.seq - 1)
                   WHEN s.prev_hash <> s.p_hash THEN 'chain broken: prev_hash is not the previous entry''s hash'
                 END AS problem
            FROM (SELECT l.stream, l.seq, l.logged_at, l.prev_hash, l.hash,
                         l.hash <> audit._hash_v1(l.prev_hash, l.stream, l.seq, l.source, l.op, l.actor, l.app,
                                                  l.txid, l.logged_at, l.payload) AS altered,
                         lag(l.seq) OVER (ORDER BY l.seq) AS p_seq, lag(l.hash) OVER (ORDER BY l.seq) AS p_hash
                    FROM audit.log l WHERE l.stream = r.stream AND l.seq >= r.from_seq) s) w
       WHERE w.problem IS NOT NULL;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT l.stream::text, l.seq, l.logged_at, 'entry altered: its hash does not match its content'
      FROM audit.log l
     WHERE l.hash <> audit._hash_v1(l.prev_hash, l.stream, l.seq, l.source, l.op, l.actor, l.app, l.txid,
                                    l.logged_at, l.payload)
       AND (p_from IS NULL OR l.stream >= p_from) AND (p_to IS NULL OR l.stream < p_to)
    UNION ALL
    SELECT * FROM audit._link_problems(NULL, p_from, p_to);
END
$$;

-- Checkpoints: signatures, their chain, the last one's root and heads. Anchors: signatures.
CREATE OR REPLACE FUNCTION audit._checkpoint_problems()
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  c      audit.checkpoints;
  k      record;
  v_sigs bytea[];
  v_ids  bigint[];
  v_root bytea;
  v_signed bigint;
BEGIN
  FOR k IN SELECT DISTINCT x.key_id FROM audit.checkpoints x LOOP
    SELECT array_agg(x.checkpoint_id ORDER BY x.checkpoint_id), (vault._hmac(k.key_id, array_agg(audit._checkpoint_msg(x) ORDER BY x.checkpoint_id))).sigs
      INTO v_ids, v_sigs FROM audit.checkpoints x WHERE x.key_id = k.key_id;
    RETURN QUERY
      SELECT 'checkpoint/' || x.checkpoint_id, x.checkpoint_id, x.created_at, 'checkpoint signature is not valid'
        FROM audit.checkpoints x JOIN unnest(v_ids, v_sigs) AS u(id, sig) ON u.id = x.checkpoint_id
       WHERE x.sig <> u.sig;
  END LOOP;
  RETURN QUERY
    SELECT 'checkpoint/' || x.checkpoint_id, x.checkpoint_id, x.created_at,
           'checkpoint does not follow the previous one (a checkpoint was removed or replaced)'
      FROM (SELECT x.*, lag(x.sig) OVER (ORDER BY x.checkpoint_id) AS p_sig FROM audit.checkpoints x) x
     WHERE x.prev_sig IS DISTINCT FROM x.p_sig;
  SELECT * INTO c FROM audit.checkpoints x ORDER BY x.checkpoint_id DESC LIMIT 1;
  IF FOUND THEN
    SELECT audit._merkle_root(array_agg(audit._leaf(h.stream, h.seq, h.hash) ORDER BY h.stream))
      INTO v_root FROM audit.checkpoint_heads h WHERE h.checkpoint_id = c.checkpoint_id;
    IF v_root <> c.root THEN
      RETURN QUERY SELECT 'checkpoint/' || c.checkpoint_id, c.checkpoint_id, c.created_at,
                          'checkpoint heads do not match its signed Merkle root';
    END IF;
    RETURN QUERY SELECT * FROM audit._missing_heads(c.checkpoint_id, NULL);
  END IF;
  -- The signer's Ed25519 signatures (registered keys), and the heads of the
  -- last signed checkpoint.
  RETURN QUERY SELECT * FROM audit._signature_problems();
  SELECT max(s.checkpoint_id) INTO v_signed FROM audit.checkpoint_signatures s;
  IF v_signed IS NOT NULL AND v_signed <> c.checkpoint_id THEN
    RETURN QUERY SELECT * FROM audit._missing_heads(v_signed, NULL);
  END IF;
  FOR k IN SELECT DISTINCT a.key_id FROM audit.anchors a LOOP
    RETURN QUERY
      SELECT a.stream, a.seq + 1, NULL::timestamptz, 'retention anchor signature is not valid'
        FROM (SELECT a.*, (vault._hmac(k.key_id, ARRAY[audit._anchor_msg(a.stream, a.seq, a.hash, a.checkpoint_id)])).sigs[1] AS good
                FROM audit.anchors a WHERE a.key_id = k.key_id) a
       WHERE a.sig <> a.good;
  END LOOP;
END
$$;

-- Heads of a checkpoint (or of an exported one, p_heads) that the log no
-- longer has with the same hash: a truncated tail or a rewritten chain. A
-- head removed by retention is fine only behind an anchor the signer signed
-- (verified against p_pinned, else the registered keys).
CREATE OR REPLACE FUNCTION audit._missing_heads(p_checkpoint bigint, p_heads jsonb, p_pinned bytea DEFAULT NULL)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE sql STABLE
AS $$
  WITH heads AS (
    SELECT h.stream, h.seq, h.hash FROM audit.checkpoint_heads h WHERE h.checkpoint_id = p_checkpoint
    UNION ALL
    SELECT j.key, (j.value ->> 0)::bigint, decode(j.value ->> 1, 'hex') FROM jsonb_each(p_heads) j),
  differ AS (
    SELECT h.stream, h.seq, h.hash, l.hash AS log_hash, l.logged_at
      FROM heads h LEFT JOIN audit.log l ON l.stream = h.stream AND l.seq = h.seq
     WHERE l.hash IS DISTINCT FROM h.hash)
  SELECT d.stream,
         CASE WHEN d.log_hash IS NULL THEN coalesce(t.last_seq, 0) + 1 ELSE d.seq END,
         d.logged_at,
         CASE WHEN d.log_hash IS NULL
              THEN format('chain truncated: ends at %s, the checkpoint has entry %s', coalesce(t.last_seq, 0), d.seq)
              ELSE format('chain rewritten: entry %s differs from the checkpoint', d.seq) END
    FROM differ d
    LEFT JOIN LATERAL (SELECT max(l2.seq) AS last_seq FROM audit.log l2 WHERE l2.stream = d.stream) t ON true
   WHERE NOT EXISTS (  -- archived behind a signed anchor
     SELECT 1 FROM audit.anchors a JOIN audit.anchor_signatures s ON s.stream = a.stream AND s.seq = a.seq
      WHERE a.stream = d.stream AND (a.seq > d.seq OR (a.seq = d.seq AND a.hash = d.hash))
        AND audit._anchor_sig_ok(a, s.key_id, s.sig, p_pinned))
$$;

-- The journal and its audit chains agree: every journal entry has its audit
-- entry and every ledger audit entry its journal row. Finds writes made while
-- the trigger was disabled and forged ledger entries. Comparing their content
-- as well is audit.verify_journal() (slower: it rebuilds every payload).
--
-- Full mode compares per account instead of per entry: the journal's
-- (account_id, seq) is unique, so count = max - min + 1 means its seqs are
-- exactly min..max, and the chain check already proves the log's are
-- first..last; equal ends then mean equal key sets. One parallel aggregate of
-- the journal and two index probes per chain, instead of anti-joins over
-- every entry (which took 40% of a full verify). Only accounts that disagree,
-- or whose chain the chain check found broken (p_recheck), get the per-entry
-- anti-joins, which pinpoint the first missing entry.
CREATE OR REPLACE FUNCTION audit._ledger_problems(p_since bigint, p_from text DEFAULT NULL, p_to text DEFAULT NULL,
                                                  p_recheck text[] DEFAULT '{}')
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
-- Hash anti-joins in memory (parallel) rather than sorting a million keys.
SET work_mem = '256MB'
SET enable_sort = off
AS $$
DECLARE
  v_accounts bigint[];
BEGIN
  IF p_since IS NOT NULL THEN  -- incremental: per account, entries past the checkpoint's head
    RETURN QUERY
      SELECT 'ledger/' || e.account_id, e.seq, e.created_at,
             'journal entry has no audit entry (written with auditing disabled?)'
        FROM credits.accounts a
        LEFT JOIN audit.checkpoint_heads h ON h.checkpoint_id = p_since AND h.stream = 'ledger/' || a.account_id
        CROSS JOIN LATERAL (SELECT x.account_id, x.seq, x.created_at FROM credits.entries x
                             WHERE x.account_id = a.account_id AND x.seq > coalesce(h.seq, 0)) e
       WHERE NOT EXISTS (SELECT 1 FROM audit.log l WHERE l.stream = 'ledger/' || e.account_id AND l.seq = e.seq)
         AND (p_from IS NULL OR ('ledger/' || a.account_id) COLLATE "C" >= p_from)
         AND (p_to IS NULL OR ('ledger/' || a.account_id) COLLATE "C" < p_to);
    RETURN QUERY
      SELECT l.stream::text, l.seq, l.logged_at, 'audit entry has no journal entry'
        FROM audit._heads() hs
        LEFT JOIN audit.checkpoint_heads h ON h.checkpoint_id = p_since AND h.stream = hs.stream
        CROSS JOIN LATERAL (SELECT x.stream, x.seq, x.logged_at FROM audit.log x
                             WHERE x.stream = hs.stream AND x.seq > coalesce(h.seq, 0)) l
       WHERE hs.stream LIKE 'ledger/%'
         AND NOT EXISTS (SELECT 1 FROM credits.entries e WHERE e.account_id = substr(l.stream, 8)::bigint AND e.seq = l.seq)
         AND (p_from IS NULL OR hs.stream >= p_from) AND (p_to IS NULL OR hs.stream < p_to);
    RETURN;
  END IF;
  -- The journal per account: one parallel aggregate for everything, or (a
  -- slice of chains) index scans of the slice's accounts only.
  SELECT array_agg(coalesce(j.account_id, c.account_id)) INTO v_accounts
    FROM (SELECT e.account_id, count(*) AS n, min(e.seq) AS lo, max(e.seq) AS hi
            FROM credits.entries e WHERE p_from IS NULL AND p_to IS NULL GROUP BY e.account_id
          UNION ALL
          SELECT a.account_id, x.n, x.lo, x.hi
            FROM credits.accounts a
            CROSS JOIN LATERAL (SELECT count(*) AS n, min(e.seq) AS lo, max(e.seq) AS hi
                                  FROM credits.entries e WHERE e.account_id = a.account_id) x
           WHERE (p_from IS NOT NULL OR p_to IS NOT NULL) AND x.n > 0
             AND (p_from IS NULL OR ('ledger/' || a.account_id) COLLATE "C" >= p_from)
             AND (p_to IS NULL OR ('ledger/' || a.account_id) COLLATE "C" < p_to)) j
    FULL JOIN (SELECT substr(hs.stream, 8)::bigint AS account_id, hs.seq AS hi,
                      (SELECT min(l.seq) FROM audit.log l WHERE l.stream = hs.stream) AS lo
                 FROM audit._heads() hs WHERE hs.stream LIKE 'ledger/%') c ON c.account_id = j.account_id
   WHERE (j.account_id IS NULL OR c.account_id IS NULL OR j.n <> j.hi - j.lo + 1 OR j.lo <> c.lo OR j.hi <> c.hi
          OR 'ledger/' || j.account_id = ANY (p_recheck))
     AND (p_from IS NULL OR ('ledger/' || coalesce(j.account_id, c.account_id)) COLLATE "C" >= p_from)
     AND (p_to IS NULL OR ('ledger/' || coalesce(j.account_id, c.account_id)) COLLATE "C" < p_to);
  IF v_accounts IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'ledger/' || e.account_id, e.seq, e.created_at,
           'journal entry has no audit entry (written with auditing disabled?)'
      FROM credits.entries e
     WHERE e.account_id = ANY (v_accounts)
       AND NOT EXISTS (SELECT 1 FROM audit.log l WHERE l.stream = 'ledger/' || e.account_id AND l.seq = e.seq);
  RETURN QUERY
    SELECT l.stream::text, l.seq, l.logged_at, 'audit entry has no journal entry'
      FROM unnest(v_accounts) a(account_id)
      JOIN audit.log l ON l.stream = 'ledger/' || a.account_id
     WHERE NOT EXISTS (SELECT 1 FROM credits.entries e WHERE e.account_id = a.account_id AND e.seq = l.seq);
END
$$;

-- Journal rows whose content differs from their audit entry (a journal row
-- edited behind the triggers' back). O(entries); not part of verify().
CREATE OR REPLACE FUNCTION audit.verify_journal()
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'ledger/' || e.account_id, e.seq, e.created_at, 'journal entry differs from its audit entry'
    FROM credits.entries e JOIN audit.log l ON l.stream = 'ledger/' || e.account_id AND l.seq = e.seq
   WHERE l.payload <> audit._entry_json(e)
   ORDER BY 1, 2
$$;
COMMENT ON FUNCTION audit.verify_journal() IS
  'Journal rows of credits.entries whose content differs from their audit entry (edited behind the triggers'' '
  'back). Returns one row per problem, none when the journal matches; O(entries).';

-- Problems found, at most one per stream and kind of check (the chain, the
-- checkpoints, the DDL watch, the journal). p_from/p_to restrict the chains
-- examined to a range of stream names (the CLI verifies in slices to show
-- progress); checkpoints and the DDL watch are examined in the first slice
-- (p_from IS NULL). Each check is its own statement so the chain scan may use
-- parallel workers.
CREATE OR REPLACE FUNCTION audit.verify_streams(p_incremental boolean DEFAULT false, p_ledger boolean DEFAULT true,
                                                p_from text DEFAULT NULL, p_to text DEFAULT NULL,
                                                p_journal boolean DEFAULT false)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_since  bigint;
  v_broken text[] := '{}';  -- chains the chain check found broken: the journal check pinpoints them
  r        record;
BEGIN
  IF p_incremental THEN
    SELECT max(c.checkpoint_id) INTO v_since FROM audit.checkpoints c;
  END IF;
  FOR r IN SELECT * FROM audit._chain_problems(v_since, p_from, p_to) LOOP
    stream := r.stream; seq := r.seq; logged_at := r.logged_at; problem := r.problem;
    RETURN NEXT;
    v_broken := v_broken || r.stream;
  END LOOP;
  IF p_from IS NULL THEN
    RETURN QUERY SELECT * FROM audit._checkpoint_problems();
    RETURN QUERY SELECT * FROM audit._ddl_watch_problems();
    RETURN QUERY SELECT * FROM audit._trigger_problems();
    RETURN QUERY SELECT * FROM audit._ddl_chain_problems();
    IF v_since IS NULL THEN
      RETURN QUERY SELECT * FROM audit._state_problems();
    END IF;
  END IF;
  IF p_ledger THEN
    RETURN QUERY SELECT * FROM audit._ledger_problems(v_since, p_from, p_to, v_broken);
    IF p_journal THEN
      RETURN QUERY SELECT * FROM audit._journal_problems(v_since, p_from, p_to);
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION audit.verify_streams(boolean, boolean, text, text, boolean) IS
  'Every problem verification finds, at most one per chain and kind of check (chain hashes, checkpoints and their '
  'signatures, the DDL watch, triggers, row state, the journal). p_incremental starts from the last checkpoint, '
  'p_ledger includes the ledger chains, p_from/p_to restrict the chains to a name range, p_journal compares every '
  'journal row''s content with its audit entry. No rows: all verified.';

-- One row: ok, what was checked, and the first broken entry: the earliest in
-- time of the first breaks of every broken chain. p_journal also compares
-- every journal row's content with its audit entry (what the operator checks,
-- `shieldx audit verify` and GET /v1/audit/verify, do by default).
CREATE OR REPLACE FUNCTION audit.verify(p_incremental boolean DEFAULT false, p_ledger boolean DEFAULT true,
  p_journal boolean DEFAULT false, OUT ok boolean, OUT entries_checked bigint, OUT streams_checked bigint,
  OUT since_checkpoint bigint,
  OUT broken_streams bigint, OUT stream text, OUT seq bigint, OUT problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r record;
BEGIN
  IF p_incremental THEN
    SELECT max(c.checkpoint_id) INTO since_checkpoint FROM audit.checkpoints c;
  END IF;
  IF since_checkpoint IS NULL THEN
    SELECT count(*) INTO entries_checked FROM audit.log;
    SELECT count(*) INTO streams_checked FROM audit._heads();
  ELSE  -- entries from each chain's checkpointed head on
    SELECT count(*), coalesce(sum(hs.seq - coalesce(h.seq, 1) + 1), 0) INTO streams_checked, entries_checked
      FROM audit._heads() hs
      LEFT JOIN audit.checkpoint_heads h ON h.checkpoint_id = since_checkpoint AND h.stream = hs.stream;
  END IF;
  broken_streams := 0;
  FOR r IN SELECT * FROM (SELECT DISTINCT ON (x.stream) x.* FROM audit.verify_streams(p_incremental, p_ledger, NULL, NULL, p_journal) x
                           ORDER BY x.stream, x.seq) v
            ORDER BY v.logged_at NULLS FIRST, v.stream, v.seq LOOP
    IF broken_streams = 0 THEN
      stream := r.stream; seq := r.seq; problem := r.problem;
    END IF;
    broken_streams := broken_streams + 1;
  END LOOP;
  ok := broken_streams = 0;
END
$$;
COMMENT ON FUNCTION audit.verify(boolean, boolean, boolean) IS
  'Verify every audit chain (p_incremental: only entries since the last checkpoint; p_ledger: include the ledger '
  'chains; p_journal: compare the journal rows'' content with their audit entries). Returns one row: ok, what '
  'was checked, and the earliest first break (stream, seq, problem) when a chain is broken.';
