-- What verify() checks beyond the chains: that the guards are on in the
-- catalog now, that the catalog agrees with what the DDL chains logged, and
-- that every audited row is what its chain last logged. A change made while
-- a trigger was off (ALTER TABLE ... DISABLE TRIGGER, or an UPDATE of
-- pg_trigger that no event trigger sees) is found here even after the
-- trigger is back on, because the row no longer matches its audit trail.

-- Guards off in the catalog: every audit or append-only trigger of a watched
-- table must be ENABLE ALWAYS (pg_trigger.tgenabled = 'A'), whatever
-- audit.ddl_watched says (a superuser can edit that table, or flip
-- tgenabled with an UPDATE that no event trigger sees). Reported as the
-- table's DDL chain, at its last entry (0 if it has none).
CREATE OR REPLACE FUNCTION audit._trigger_problems()
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE sql STABLE
AS $$
  SELECT 'ddl/' || t.tgrelid::regclass::text,
         coalesce((SELECT max(l.seq) FROM audit.log l WHERE l.stream = 'ddl/' || t.tgrelid::regclass::text), 0),
         NULL::timestamptz,
         format('trigger %s on %s is %s in the catalog (pg_trigger.tgenabled = %L), not ENABLE ALWAYS',
                t.tgname, t.tgrelid::regclass, audit._ddl_mode(t.tgenabled), t.tgenabled)
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
   WHERE NOT t.tgisinternal AND t.tgenabled <> 'A'
     AND ((p.pronamespace = pg_catalog.to_regnamespace('audit') AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype)
          OR p.oid = pg_catalog.to_regprocedure('ops._refuse_change()'))
$$;

-- The catalog against the DDL chains: per object, the facts its chain last
-- added must hold now and those it last removed must not (folded in seq
-- order), so an object changed behind the watch's back and its
-- audit.ddl_watched row edited to match is still found. An object the chain
-- does not say was dropped must exist.
CREATE OR REPLACE FUNCTION audit._ddl_chain_problems()
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  o       record;
  v_oid   oid;
  v_facts text[];
  v_bad   text;
BEGIN
  FOR o IN
    WITH e AS (
      SELECT l.stream, l.seq, l.payload::jsonb AS p FROM audit.log l WHERE l.stream LIKE 'ddl/%'),
    f AS (  -- the last word of the chain on every fact it mentions
      SELECT DISTINCT ON (e.stream, x.fact) e.stream, x.fact, x.present
        FROM e CROSS JOIN LATERAL (
          SELECT a.fact, true AS present FROM jsonb_array_elements_text(e.p -> 'added') a(fact)
          UNION ALL SELECT r.fact, false FROM jsonb_array_elements_text(e.p -> 'removed') r(fact)) x
       ORDER BY e.stream, x.fact, e.seq DESC, x.present)
    SELECT h.stream, h.seq, h.p ->> 'kind' AS kind, h.p ->> 'object' AS object, coalesce((h.p ->> 'dropped')::boolean, false) AS dropped,
           (SELECT array_agg(f.fact) FROM f WHERE f.stream = h.stream AND f.present) AS present,
           (SELECT array_agg(f.fact) FROM f WHERE f.stream = h.stream AND NOT f.present) AS absent
      FROM (SELECT DISTINCT ON (e.stream) e.stream, e.seq, e.p FROM e ORDER BY e.stream, e.seq DESC) h
  LOOP
    v_oid := CASE o.kind WHEN 'table' THEN to_regclass(o.object)::oid ELSE to_regprocedure(o.object)::oid END;
    IF v_oid IS NULL THEN
      CONTINUE WHEN o.dropped;
      stream := o.stream; seq := o.seq; logged_at := NULL;
      problem := format('%s %s is gone, but its DDL chain does not say it was dropped', o.kind, o.object);
      RETURN NEXT;
      CONTINUE;
    END IF;
    CONTINUE WHEN o.dropped;  -- dropped, then made again: a new object, not this chain's
    SELECT x.facts INTO v_facts FROM audit._ddl_facts(o.kind, v_oid) x;
    SELECT m INTO v_bad FROM unnest(o.present) m WHERE m <> ALL (v_facts) ORDER BY 1 LIMIT 1;
    IF v_bad IS NULL THEN
      SELECT m INTO v_bad FROM unnest(o.absent) m WHERE m = ANY (v_facts) ORDER BY 1 LIMIT 1;
      IF v_bad IS NOT NULL THEN
        v_bad := 'has ' || quote_literal(v_bad) || ', which its DDL chain last logged as removed';
      END IF;
    ELSE
      v_bad := 'lacks ' || quote_literal(v_bad) || ', which its DDL chain last logged as added';
    END IF;
    IF v_bad IS NOT NULL THEN
      stream := o.stream; seq := o.seq; logged_at := NULL;
      problem := format('%s %s %s (changed behind the DDL watch)', o.kind, o.object, v_bad);
      RETURN NEXT;
    END IF;
  END LOOP;
END
$$;

-- Every audited row against its last audited state: the row as its chain
-- last logged it (an INSERT's row, an UPDATE's new row) must be the row now;
-- a row the chain says was deleted must be gone; a row without any audit
-- entry was written with auditing off. Only the columns the last entry logged
-- are compared (a column added later by a migration is not a change): the
-- row with the logged values written over it must still be the row. Tables: those with an audit row
-- trigger (audit._log_row, audit._log_row_keyed); columns the trigger omits
-- are not compared, and for credits.accounts only what its trigger logs
-- changes of (tenant, name, status: balances are the journal's, checked by
-- the ledger cross-check). A row whose whole history retention removed
-- (behind a signed anchor) has nothing left to compare with. Reported as the
-- row's chain and its last entry.
CREATE OR REPLACE FUNCTION audit._state_problems()
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t       record;
  v_cols  text;
  v_chain text;
BEGIN
  FOR t IN
    SELECT tr.tgrelid::regclass AS rel,
           n.nspname || '.' || c.relname AS name,
           (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = tr.tgrelid AND i.indisprimary) AS pk,
           -- the trigger's first argument picks the chain; the others name columns never logged
           (string_to_array(rtrim(encode(tr.tgargs, 'escape'), '\000'), '\000'))[1] AS chain_col,
           (SELECT coalesce(array_agg(x), '{}') FROM unnest((string_to_array(rtrim(encode(tr.tgargs, 'escape'), '\000'), '\000'))[2:]) x) AS omit,
           tr.tgfoid = 'audit._log_row_keyed()'::regprocedure AS keyed
      FROM (SELECT DISTINCT ON (tr.tgrelid) tr.* FROM pg_trigger tr
             WHERE tr.tgfoid IN ('audit._log_row()'::regprocedure, 'audit._log_row_keyed()'::regprocedure)
               AND NOT tr.tgisinternal ORDER BY tr.tgrelid, tr.tgname) tr
      JOIN pg_class c ON c.oid = tr.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     ORDER BY 2
  LOOP
    CONTINUE WHEN t.pk IS NULL;
    -- What the last entry says (omitted columns were never logged); for
    -- credits.accounts only what its trigger logs changes of.
    v_cols := CASE WHEN t.name = 'credits.accounts'
                   THEN 'jsonb_build_object(''tenant_id'', l.st -> ''tenant_id'', ''name'', l.st -> ''name'', ''status'', l.st -> ''status'')'
                   ELSE 'l.st' END;
    -- The chain a row's history is in (as audit._log_row and audit._log_row_keyed pick it).
    v_chain := CASE WHEN t.keyed THEN format('%L || (to_jsonb(r) ->> %L)', t.name || '/', t.chain_col)
                    ELSE format('%L || (abs(hashtext(coalesce(to_jsonb(r) ->> %L, %L))) %% 16)', t.name || '/', t.chain_col, '') END;
    RETURN QUERY EXECUTE format($q$
      WITH l AS (
        SELECT DISTINCT ON (x.k) x.stream, x.seq, x.logged_at, x.op, x.k, x.st
          FROM (SELECT l.stream, l.seq, l.logged_at, l.op, coalesce(p.p -> 'new', p.p) ->> %1$L AS k,
                       CASE l.op WHEN 'UPDATE' THEN p.p -> 'new' ELSE p.p END AS st
                  FROM audit.log l CROSS JOIN LATERAL (SELECT l.payload::jsonb AS p) p
                 WHERE l.stream >= %2$L AND l.stream < %3$L AND l.source = %4$L) x
         ORDER BY x.k, x.seq DESC),
      j AS (
        SELECT l.stream, l.seq, l.logged_at, l.op, r IS NULL AS gone,
               -- the row with what its last entry logged written over it: equal to the row if nothing changed
               to_jsonb(r) AS now_state, to_jsonb(jsonb_populate_record(r, %7$s)) AS last_state,
               coalesce(l.k, to_jsonb(r) ->> %1$L) AS k,
               CASE WHEN l.stream IS NULL THEN %8$s END AS row_chain
          FROM l FULL JOIN %6$s r ON (to_jsonb(r) ->> %1$L) = l.k)
      SELECT coalesce(j.stream, j.row_chain)::text, coalesce(j.seq, 0), j.logged_at,
             CASE WHEN j.stream IS NULL THEN format('%4$s row %%s has no audit entry (written with auditing off?)', j.k)
                  WHEN j.gone AND j.op <> 'DELETE' THEN format('%4$s row %%s is gone, but its audit chain does not say it was deleted', j.k)
                  WHEN NOT j.gone AND j.op = 'DELETE' THEN format('%4$s row %%s exists, but its audit chain says it was deleted', j.k)
                  ELSE format('%4$s row %%s differs from its last audited state (changed with auditing off?)', j.k) END
        FROM j
       WHERE (j.stream IS NULL  -- unless retention removed the row's history behind an anchor
              AND NOT EXISTS (SELECT 1 FROM audit.anchors a WHERE a.stream = j.row_chain))
          OR (j.gone AND j.op <> 'DELETE') OR (NOT j.gone AND j.op = 'DELETE')
          OR (NOT j.gone AND j.op <> 'DELETE' AND j.now_state IS DISTINCT FROM j.last_state)$q$,
      t.pk, t.name || '/', t.name || '0', t.name, t.omit, t.rel, v_cols, v_chain);
  END LOOP;
END
$$;

-- Journal rows whose content differs from their audit entry (a journal row
-- edited behind the triggers' back): every entry (p_since NULL) or, per
-- account, the entries after checkpoint p_since's head; restricted to the
-- chains from p_from to p_to like the other checks.
CREATE OR REPLACE FUNCTION audit._journal_problems(p_since bigint, p_from text DEFAULT NULL, p_to text DEFAULT NULL)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
-- One parallel hash join of the journal with the log: the payloads rebuilt
-- in the workers. JIT compiles for longer than it saves here.
SET work_mem = '256MB'
SET parallel_setup_cost = 0
SET parallel_tuple_cost = 0
SET jit = off
AS $$
BEGIN
  IF p_since IS NULL THEN
    RETURN QUERY
      SELECT 'ledger/' || e.account_id, e.seq, e.created_at, 'journal entry differs from its audit entry (edited behind the triggers'' back)'
        FROM credits.entries e JOIN audit.log l ON l.stream = 'ledger/' || e.account_id AND l.seq = e.seq
       WHERE l.payload <> audit._entry_json(e)
         AND (p_from IS NULL OR ('ledger/' || e.account_id) COLLATE "C" >= p_from)
         AND (p_to IS NULL OR ('ledger/' || e.account_id) COLLATE "C" < p_to);
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'ledger/' || e.account_id, e.seq, e.created_at, 'journal entry differs from its audit entry (edited behind the triggers'' back)'
      FROM credits.accounts a
      LEFT JOIN audit.checkpoint_heads h ON h.checkpoint_id = p_since AND h.stream = 'ledger/' || a.account_id
      CROSS JOIN LATERAL (SELECT x.* FROM credits.entries x WHERE x.account_id = a.account_id AND x.seq > coalesce(h.seq, 0)) e
      JOIN audit.log l ON l.stream = 'ledger/' || e.account_id AND l.seq = e.seq
     WHERE l.payload <> audit._entry_json(e)
       AND (p_from IS NULL OR ('ledger/' || a.account_id) COLLATE "C" >= p_from)
       AND (p_to IS NULL OR ('ledger/' || a.account_id) COLLATE "C" < p_to);
END
$$;
