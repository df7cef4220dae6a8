-- Writing audit entries. Triggers call these, so every change is logged the
-- same way whether it came from the API, a job or a DBA's psql session.

-- One link of a ledger chain, as the step of the window aggregate
-- audit._ledger_chain below. The state is the previous link's hash followed
-- by this link's (64 bytes), so the caller reads both from one window
-- function. p_start, when not NULL, starts a new chain (the first new entry
-- of an account in a statement): the link after it; otherwise the link after
-- the state's hash. PL/pgSQL: it keeps its plan for the session (a SQL
-- transition function is never inlined and would be planned per statement).
CREATE OR REPLACE FUNCTION audit._ledger_chain_step(p_state bytea, p_start bytea, p_stream text, p_seq bigint,
                                                    p_actor text, p_app text, p_txid bigint, p_at timestamptz,
                                                    p_payload text)
RETURNS bytea
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_prev bytea := coalesce(p_start, pg_catalog.substr(p_state, 33));
BEGIN
  RETURN v_prev || audit._hash_v1(v_prev, p_stream, p_seq, 'credits.entries', 'INSERT', p_actor, p_app, p_txid,
                                  p_at, p_payload);
END
$$;

-- Over (PARTITION BY account ORDER BY seq): at each entry, its previous hash
-- and its hash (32 + 32 bytes). The window's frame only grows, so each row
-- costs one step: a statement of n rows is chained in n steps after one sort.
-- noqa: disable=LT01,CP05
-- (sqlfluff's postgres dialect reads CREATE AGGREGATE's parameters as a column list)
CREATE OR REPLACE AGGREGATE audit._ledger_chain(bytea, text, bigint, text, text, bigint, timestamptz, text) (
  SFUNC = audit._ledger_chain_step,
  STYPE = bytea
);
-- noqa: enable=LT01,CP05

-- The ledger stream of an account: one entry per credits.entries row, with the
-- entry's own seq. The writer already holds each account's row lock (the
-- guarded balance UPDATE) until it commits, so entry seq-1 is committed and
-- visible, or was written earlier in this very transaction; each chain's order
-- is its account's commit order, with no extra lock. Each chain's first new
-- entry links to entry seq-1 (or the retention anchor that replaced it, or
-- genesis for seq 1); a missing link is chained to zeros and verify() reports
-- the gap.
--
-- Two triggers fire for every statement, and exactly one of them writes:
-- which one is chosen by the hint shieldx.ledger_bulk, and it only changes
-- the cost (both write the same rows and hashes, as
-- db/tests/test_audit_bulk_chain.py checks):
-- - audit_log, FOR EACH ROW, when the hint is not 'on': a row trigger costs
--   a single operation (one or two rows) the least, one index probe and one
--   insert per row. Row triggers fire one after another once the statement
--   is done, in the order the rows were written, each seeing the audit
--   entries the ones before it wrote: a statement of many rows of one account
--   is chained right too, one row at a time, if it writes them in seq order
--   (else it is refused: audit._ledger_link_missing).
-- - audit_log_bulk, FOR EACH STATEMENT over the transition table, when the
--   hint is 'on' (credits.apply_batch sets it around its journal INSERT): one
--   trigger call and one INSERT for the whole statement, sorted by (account,
--   seq) once and chained by the window aggregate audit._ledger_chain, each
--   hash over the one before: linear in the rows, however many entries one
--   account has.
-- Each reads the hint when it fires, after the statement is done: the
-- statement trigger after all the row triggers, and nothing runs in between
-- to change it. A test in the function body, not a WHEN clause: PostgreSQL
-- parses and plans a trigger's WHEN again for every statement, which cost a
-- single consume more than the two calls do.
--
-- Neither function is SECURITY DEFINER nor has SET search_path, to keep the
-- hot path short: only the owner's functions (and superusers) can write
-- credits.entries, so they already run with the owner's rights; every name is
-- schema-qualified.

-- The link of a ledger entry whose predecessor has no audit entry: the
-- retention anchor that replaced it, else zeros (verify() reports the gap).
-- Unless the predecessor was written by this transaction, where every earlier
-- statement's entries are audited already: then this very statement wrote the
-- account's entries out of seq order, which the row trigger (it audits rows
-- in the order they were written) cannot chain; the statement is refused
-- rather than leave a gap (the statement trigger never asks about a
-- predecessor in its own statement). A function, not a subquery of the
-- triggers' INSERT: only this rare path pays for reading audit.anchors (a
-- subquery's scan is set up on every execution, run or not).
CREATE OR REPLACE FUNCTION audit._ledger_link_missing(p_stream text, p_account bigint, p_seq bigint)
RETURNS bytea
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_anchor bytea;
BEGIN
  SELECT a.hash INTO v_anchor FROM audit.anchors AS a WHERE a.stream = p_stream AND a.seq = p_seq - 1;
  IF FOUND THEN
    RETURN v_anchor;
  END IF;
  IF EXISTS (SELECT 1 FROM credits.entries AS e
              WHERE e.account_id = p_account AND e.seq = p_seq - 1 AND e.created_at = pg_catalog.now()) THEN
    RAISE EXCEPTION 'one statement wrote entries % and % of account % out of seq order', p_seq - 1, p_seq, p_account
      USING ERRCODE = 'XX000',
            HINT = 'write each account''s entries in seq order, or set shieldx.ledger_bulk = on for the statement';
  END IF;
  RETURN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
END
$$;

CREATE OR REPLACE FUNCTION audit._log_ledger_row()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF pg_catalog.current_setting('shieldx.ledger_bulk', true) = 'on' THEN
    RETURN NULL;  -- audit._log_ledger writes this statement's entries
  END IF;
  INSERT INTO audit.log (stream, seq, source, op, actor, app, txid, logged_at, payload, prev_hash, hash)
  SELECT x.stream, NEW.seq, 'credits.entries', 'INSERT', x.actor, x.app, x.txid, x.at, x.payload, x.prev,
         audit._hash_v1(x.prev, x.stream, NEW.seq, 'credits.entries', 'INSERT', x.actor, x.app, x.txid,
                        x.at, x.payload)
    FROM (SELECT s.stream, session_user::text AS actor,
                 pg_catalog.current_setting('application_name') AS app, pg_catalog.txid_current() AS txid,
                 pg_catalog.now() AS at,
                 audit._entry_json(NEW) AS payload,
                 CASE WHEN NEW.seq = 1 THEN audit._genesis(s.stream)
                      ELSE coalesce((SELECT l.hash FROM audit.log AS l
                                      WHERE l.stream = s.stream AND l.seq = NEW.seq - 1),
                                    audit._ledger_link_missing(s.stream, NEW.account_id, NEW.seq))
                 END AS prev
            FROM (SELECT 'ledger/' || NEW.account_id AS stream) AS s OFFSET 0) AS x;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION audit._log_ledger()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF pg_catalog.current_setting('shieldx.ledger_bulk', true) IS DISTINCT FROM 'on' THEN
    RETURN NULL;  -- audit._log_ledger_row wrote this statement's entries
  END IF;
  INSERT INTO audit.log (stream, seq, source, op, actor, app, txid, logged_at, payload, prev_hash, hash)
  SELECT c.stream, c.seq, 'credits.entries', 'INSERT', c.actor, c.app, c.txid, c.at, c.payload,
         pg_catalog.substr(c.link, 1, 32), pg_catalog.substr(c.link, 33)
    FROM (SELECT s.stream, s.seq, s.payload, s.actor, s.app, s.txid, s.at,
                 audit._ledger_chain(s.start, s.stream, s.seq, s.actor, s.app, s.txid, s.at, s.payload)
                   OVER (PARTITION BY s.account_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING) AS link
            FROM (SELECT n.stream, n.account_id, n.seq, n.payload, x.actor, x.app, x.txid, x.at,
                         CASE WHEN n.seq - 1 IS NOT DISTINCT FROM n.before THEN NULL
                              WHEN n.seq = 1 THEN audit._genesis(n.stream)
                              ELSE coalesce(
                                (SELECT l.hash FROM audit.log AS l WHERE l.stream = n.stream AND l.seq = n.seq - 1),
                                audit._ledger_link_missing(n.stream, n.account_id, n.seq))
                         END AS start
                    FROM (SELECT 'ledger/' || e.account_id AS stream, e.account_id, e.seq,
                                 audit._entry_json(e::credits.entries) AS payload,
                                 pg_catalog.lag(e.seq) OVER (PARTITION BY e.account_id ORDER BY e.seq) AS before
                            FROM new_entries AS e) AS n
                   CROSS JOIN (SELECT session_user::text AS actor,
                                      pg_catalog.current_setting('application_name') AS app,
                                      pg_catalog.txid_current() AS txid, pg_catalog.now() AS at OFFSET 0) AS x
                 ) AS s
         ) AS c;
  RETURN NULL;
END
$$;

-- Write entry p_seq of a chain after the entry whose hash is p_prev, stamped
-- with the session's user, application and transaction; returns its hash.
-- Every chain but the ledger's (whose trigger inlines it, on the hot path)
-- writes through here. PL/pgSQL, not SQL: a SQL function with a SET clause is
-- never inlined and re-plans its INSERT in every transaction (measured: that
-- planning was a fifth of a hold commit's CPU); PL/pgSQL keeps the plan.
CREATE OR REPLACE FUNCTION audit._write(p_stream text, p_seq bigint, p_prev bytea, p_source text, p_op text,
                                        p_payload text)
RETURNS bytea
LANGUAGE plpgsql
AS $$
DECLARE
  v_hash bytea;
BEGIN
  INSERT INTO audit.log AS l (stream, seq, source, op, actor, app, txid, logged_at, payload, prev_hash, hash)
  SELECT p_stream, p_seq, p_source, p_op, x.actor, x.app, x.txid, x.at, p_payload, p_prev,
         audit._hash_v1(p_prev, p_stream, p_seq, p_source, p_op, x.actor, x.app, x.txid, x.at, p_payload)
    FROM (SELECT session_user::text AS actor, pg_catalog.current_setting('application_name') AS app,
                 pg_catalog.txid_current() AS txid, pg_catalog.now() AS at OFFSET 0) x
  RETURNING l.hash INTO v_hash;
  RETURN v_hash;
END
$$;

-- What a row trigger logs: the row (inserted or deleted), or both versions of
-- an updated one. STABLE, as jsonb_build_object is: an IMMUTABLE SQL function
-- calling a STABLE one is never inlined, and then re-plans in every
-- transaction (measured: 45 µs per hold change).
CREATE OR REPLACE FUNCTION audit._row_payload(p_op text, p_new jsonb, p_old jsonb)
RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE p_op WHEN 'UPDATE' THEN jsonb_build_object('old', p_old, 'new', p_new)
                   ELSE coalesce(p_new, p_old) END::text;
$$;

-- Append to any other chain. The chain's head row is locked (UPDATE) until
-- commit, so concurrent writers of one chain queue and the chain is in commit
-- order; writers of different chains never meet.
CREATE OR REPLACE FUNCTION audit._append(p_stream text, p_source text, p_op text, p_payload text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_seq  bigint;
  v_prev bytea;
  v_hash bytea;
BEGIN
  LOOP
    UPDATE audit.heads h SET seq = h.seq + 1 WHERE h.stream = p_stream RETURNING h.seq, h.hash INTO v_seq, v_prev;
    EXIT WHEN FOUND;
    -- First entry of the chain (or the cache was lost): start after the log's last entry.
    INSERT INTO audit.heads (stream, seq, hash)
    SELECT p_stream, coalesce(max(l.seq), 0),
           coalesce((SELECT l2.hash FROM audit.log l2 WHERE l2.stream = p_stream ORDER BY l2.seq DESC LIMIT 1),
                    audit._genesis(p_stream))
      FROM audit.log l WHERE l.stream = p_stream
    ON CONFLICT (stream) DO NOTHING;
  END LOOP;
  v_hash := audit._write(p_stream, v_seq, v_prev, p_source, p_op, p_payload);
  UPDATE audit.heads h SET hash = v_hash WHERE h.stream = p_stream;
  RETURN v_seq;
END
$$;

-- Row trigger for every other audited table. TG_ARGV[0] names the column that
-- picks one of 16 chains per table (so one row's history stays in one chain);
-- further arguments name columns never to copy into the log (secrets).
CREATE OR REPLACE FUNCTION audit._log_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_new  jsonb;
  v_old  jsonb;
  v_row  jsonb;
  v_omit text[] := coalesce(TG_ARGV[1:], '{}');
BEGIN
  IF TG_OP <> 'DELETE' THEN v_new := to_jsonb(NEW) - v_omit; END IF;
  IF TG_OP <> 'INSERT' THEN v_old := to_jsonb(OLD) - v_omit; END IF;
  v_row := coalesce(v_new, v_old);
  PERFORM audit._append(
    TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME || '/' || (abs(hashtext(coalesce(v_row ->> TG_ARGV[0], ''))) % 16),
    TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, audit._row_payload(TG_OP, v_new, v_old));
  RETURN NULL;
END
$$;

-- Row trigger for tables whose writers of one key are already serialized by a
-- row lock they hold until commit: every change of credits.holds updates its
-- account's row (held, balance) first, and a credits.accounts change updates
-- that very row. TG_ARGV[0] names the key column; the chain is
-- '<table>/<key>', so its order is that lock's commit order and no shared
-- head is locked (the 16 shared heads of _log_row serialized unrelated
-- accounts and were held through commit). The previous link is the stream's
-- last entry (or its retention anchor, or genesis): one index probe. A writer
-- that skipped the lock would collide on audit.log's (stream, seq) key and
-- fail: the chain can refuse a write, never fork. Further arguments name
-- columns never to copy into the log.
-- Neither SECURITY DEFINER nor SET search_path (each costs a GUC save and
-- restore per row on the hold path): only the owner's functions, and
-- superusers, can write these tables, so this already runs with the owner's
-- rights (anyone else would fail closed on audit.log's privileges); every
-- name is schema-qualified. audit._write has no SET clause for the same reason.
CREATE OR REPLACE FUNCTION audit._log_row_keyed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  v_new    jsonb;
  v_old    jsonb;
  v_row    jsonb;
  v_omit   text[] := coalesce(TG_ARGV[1:], '{}');
  v_stream text;
  v_seq    bigint;
  v_prev   bytea;
BEGIN
  IF TG_OP <> 'DELETE' THEN v_new := to_jsonb(NEW) - v_omit; END IF;
  IF TG_OP <> 'INSERT' THEN v_old := to_jsonb(OLD) - v_omit; END IF;
  v_row := coalesce(v_new, v_old);
  v_stream := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME || '/' || coalesce(v_row ->> TG_ARGV[0], '');
  SELECT l.seq, l.hash INTO v_seq, v_prev FROM audit.log l WHERE l.stream = v_stream ORDER BY l.seq DESC LIMIT 1;
  IF NOT FOUND THEN
    SELECT a.seq, a.hash INTO v_seq, v_prev FROM audit.anchors a WHERE a.stream = v_stream ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
      v_seq := 0; v_prev := audit._genesis(v_stream);
    END IF;
  END IF;
  PERFORM audit._write(v_stream, v_seq + 1, v_prev, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
                       audit._row_payload(TG_OP, v_new, v_old));
  RETURN NULL;
END
$$;
