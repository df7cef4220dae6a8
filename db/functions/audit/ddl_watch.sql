-- The DDL watch: every change to an audited object is itself written to the
-- audit log, in the chain 'ddl/<object>'. A superuser who disables an audit or
-- append-only trigger, writes, and enables it again leaves two entries that
-- name the trigger, the table, the session user and the command.
--
-- Watched objects: every table with an audit or append-only trigger (a
-- trigger running a trigger function of schema audit, or ops._refuse_change)
-- and every function those tables' triggers run or schema audit holds.
-- audit.ddl_watched keeps each one's last logged state as a sorted list of
-- facts ('trigger audit_log: ENABLE ALWAYS', 'column seq bigint NOT NULL',
-- 'body md5 ...'). After a DDL command (event triggers on ddl_command_end and
-- sql_drop) the objects it touched are described again; the facts removed and
-- added are logged, and the list is updated. Comparing states instead of
-- parsing commands means that a command which changes nothing logs nothing (a
-- migrate re-runs ENABLE ALWAYS and CREATE OR REPLACE FUNCTION every time),
-- and that every road to a change is seen the same way: ALTER TABLE, ALTER
-- TRIGGER, DROP FUNCTION ... CASCADE, a DO block, a function running DDL.
--
-- A chain per object, 'ddl/credits.entries', 'ddl/ops._refuse_change()', as
-- the ledger has a chain per account: the DDL that changes an object already
-- holds that object's lock (or row of pg_proc) until commit, so the chain is in
-- commit order and two transactions changing different objects never wait
-- for each other. One shared 'ddl' head, held to commit, would serialize all
-- such transactions and deadlock two that each alter one table and then the
-- other's. All of them: stream LIKE 'ddl/%' ORDER BY txid. Each entry: source
-- = the object, op = the command tag, actor = session user; the payload adds
-- the facts removed and added, SET ROLE's role, and the command text (the
-- client's whole query, cut to 2000 characters).
--
-- What it cannot see: event triggers do not fire for event-trigger DDL, so a
-- superuser can DROP or DISABLE the watch itself unlogged (verify() then
-- reports it off, and any object that no longer matches its last logged
-- state); REASSIGN OWNED and GRANT/REVOKE are not watched.

-- The small helpers below have no SET clause, so a call costs no GUC save and
-- restore (and the simplest are inlined): a migrate runs the watch after
-- hundreds of commands. So they qualify every name.

-- ENABLE ALWAYS, DISABLE, ...: the ALTER TABLE words for a trigger's or rule's firing mode.
-- "char" is quoted on purpose: it names the one-byte type of pg_trigger.tgenabled, not char(1).
CREATE OR REPLACE FUNCTION audit._ddl_mode(p "char")  -- noqa: RF06
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE p WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA' WHEN 'D' THEN 'DISABLE'
                WHEN 'O' THEN 'ENABLE' END
$$;

-- A table is watched if it has an audit or append-only trigger.
CREATE OR REPLACE FUNCTION audit._ddl_guarded(p_rel oid)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                  WHERE t.tgrelid = p_rel
                    AND ((p.pronamespace = pg_catalog.to_regnamespace('audit')
                          AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype)
                         OR p.oid = pg_catalog.to_regprocedure('ops._refuse_change()')))
$$;

-- Is this object watched: a guarded table, a function of schema audit, or
-- one that a trigger of a guarded table runs?
CREATE OR REPLACE FUNCTION audit._ddl_is_watched(p_kind text, p_objid oid)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT CASE p_kind
           WHEN 'table' THEN audit._ddl_guarded(p_objid)
           ELSE EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                         WHERE p.oid = p_objid AND p.pronamespace = pg_catalog.to_regnamespace('audit'))
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                            WHERE t.tgfoid = p_objid AND NOT t.tgisinternal AND audit._ddl_guarded(t.tgrelid))
         END
$$;

-- Every object watched now.
CREATE OR REPLACE FUNCTION audit._ddl_watched()
RETURNS TABLE (kind text, objid oid)
LANGUAGE sql STABLE
AS $$
  SELECT x.kind, x.objid
    FROM (SELECT 'table' AS kind, t.tgrelid AS objid FROM pg_catalog.pg_trigger t
          UNION SELECT 'function', t.tgfoid FROM pg_catalog.pg_trigger t
          UNION SELECT 'function', p.oid FROM pg_catalog.pg_proc p
                 WHERE p.pronamespace = pg_catalog.to_regnamespace('audit')) x
   WHERE audit._ddl_is_watched(x.kind, x.objid)
$$;

-- An object as facts, sorted; NULL if it no longer exists. PL/pgSQL keeps
-- the plans of these catalog queries for the session.
CREATE OR REPLACE FUNCTION audit._ddl_facts(p_kind text, p_objid oid, OUT name text, OUT facts text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_kind = 'table' THEN
    SELECT c.oid::regclass::text, ARRAY(SELECT f FROM (
             SELECT 'name ' || c.oid::regclass::text AS f
             UNION ALL SELECT 'owner ' || c.relowner::regrole::text
             UNION ALL SELECT CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED' WHEN 't' THEN 'TEMPORARY' ELSE 'LOGGED' END
             UNION ALL SELECT 'ROW LEVEL SECURITY' WHERE c.relrowsecurity
             UNION ALL SELECT 'FORCE ROW LEVEL SECURITY' WHERE c.relforcerowsecurity
             UNION ALL SELECT 'WITH (' || array_to_string(c.reloptions, ', ') || ')' WHERE c.reloptions IS NOT NULL
             UNION ALL
             SELECT 'column ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                    || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                          WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
                    || coalesce(CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' ELSE ' DEFAULT ' END
                                || pg_get_expr(d.adbin, d.adrelid)
                                || CASE WHEN a.attgenerated = 's' THEN ') STORED' ELSE '' END, '')
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT 'constraint ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid)
               FROM pg_constraint k WHERE k.conrelid = c.oid
             UNION ALL
             SELECT 'rule ' || quote_ident(r.rulename) || ': ' || v.x
               FROM pg_rewrite r
               CROSS JOIN LATERAL (VALUES (audit._ddl_mode(r.ev_enabled)), (pg_get_ruledef(r.oid))) v(x)
              WHERE r.ev_class = c.oid
             UNION ALL
             SELECT 'trigger ' || quote_ident(t.tgname) || ': ' || v.x
               FROM pg_trigger t
               CROSS JOIN LATERAL (VALUES (audit._ddl_mode(t.tgenabled)), (pg_get_triggerdef(t.oid))) v(x)
              WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) x ORDER BY f COLLATE "C")
      INTO name, facts
      FROM pg_class c WHERE c.oid = p_objid;
  ELSE
    SELECT p.oid::regprocedure::text, ARRAY(SELECT f FROM (
             SELECT 'name ' || p.oid::regprocedure::text AS f
             UNION ALL SELECT 'owner ' || p.proowner::regrole::text
             UNION ALL SELECT 'LANGUAGE ' || l.lanname FROM pg_language l WHERE l.oid = p.prolang
             UNION ALL SELECT 'RETURNS ' || pg_get_function_result(p.oid)
             UNION ALL SELECT CASE p.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END
             UNION ALL SELECT 'STRICT' WHERE p.proisstrict
             UNION ALL SELECT 'SECURITY DEFINER' WHERE p.prosecdef
             UNION ALL SELECT 'SET ' || s FROM unnest(p.proconfig) s
             UNION ALL SELECT 'body md5 ' || md5(p.prosrc)) x ORDER BY f COLLATE "C")
      INTO name, facts
      FROM pg_proc p WHERE p.oid = p_objid;
  END IF;
END
$$;

-- Objects (all if p_kinds is NULL) whose state differs from audit.ddl_watched:
-- changed, new (was NULL), gone (facts NULL), or no longer watched. Only
-- objects remembered or watched now are described.
CREATE OR REPLACE FUNCTION audit._ddl_changes(p_kinds text[], p_objids oid[])
RETURNS TABLE (kind text, objid oid, was_name text, was text[], name text, facts text[], watched boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  o record;
BEGIN
  FOR o IN SELECT a.kind, a.objid FROM unnest(p_kinds, p_objids) a(kind, objid)
           UNION SELECT b.kind, b.objid FROM audit.ddl_watched b WHERE p_kinds IS NULL
           UNION SELECT w.kind, w.objid FROM audit._ddl_watched() w WHERE p_kinds IS NULL LOOP
    kind := o.kind; objid := o.objid; was_name := NULL; was := NULL;
    SELECT b.name, b.facts INTO was_name, was FROM audit.ddl_watched b WHERE b.kind = o.kind AND b.objid = o.objid;
    watched := audit._ddl_is_watched(o.kind, o.objid);
    CONTINUE WHEN was IS NULL AND NOT watched;
    SELECT f.name, f.facts INTO name, facts FROM audit._ddl_facts(o.kind, o.objid) f;
    IF was IS DISTINCT FROM facts OR NOT watched THEN
      RETURN NEXT;
    END IF;
  END LOOP;
END
$$;

-- The command text for the log: the client's whole query (a migrate sends a
-- file at a time), cut to 2000 characters; runs of 12 to 19 digits (a card
-- number?) are blanked, as nothing in the audit log may hold one.
CREATE OR REPLACE FUNCTION audit._ddl_query()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN length(q) > 2000 THEN left(q, 2000) || '...' ELSE q END
    FROM (SELECT regexp_replace(current_query(), '[0-9]([ -]?[0-9]){11,18}', '[digits]', 'g') AS q) x
$$;

-- Log what changed (p_log_new: also objects seen for the first time) and
-- remember the new state.
CREATE OR REPLACE FUNCTION audit._ddl_record(p_command text, p_kinds text[], p_objids oid[], p_query text,
                                             p_log_new boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r        record;
  v_object text;
BEGIN
  FOR r IN SELECT * FROM audit._ddl_changes(p_kinds, p_objids) c
            ORDER BY c.kind DESC, coalesce(c.name, c.was_name) COLLATE "C" LOOP
    v_object := coalesce(r.name, r.was_name);
    IF r.was IS DISTINCT FROM r.facts AND (r.was IS NOT NULL OR p_log_new) THEN
      PERFORM audit._append('ddl/' || v_object, v_object, p_command, jsonb_strip_nulls(jsonb_build_object(
        'command', p_command, 'kind', r.kind, 'object', v_object,
        'renamed_from', CASE WHEN r.was_name <> r.name THEN r.was_name END,
        'dropped', CASE WHEN r.facts IS NULL THEN true END,
        'removed', to_jsonb(ARRAY(SELECT unnest(r.was) EXCEPT SELECT unnest(r.facts) ORDER BY 1)),
        'added', to_jsonb(ARRAY(SELECT unnest(r.facts) EXCEPT SELECT unnest(r.was) ORDER BY 1)),
        'role', nullif(current_setting('role'), 'none'),
        'query', p_query))::text);
    END IF;
    IF r.facts IS NULL OR NOT r.watched THEN
      DELETE FROM audit.ddl_watched b WHERE b.kind = r.kind AND b.objid = r.objid;
    ELSE
      INSERT INTO audit.ddl_watched AS b (kind, objid, name, facts) VALUES (r.kind, r.objid, r.name, r.facts)
      ON CONFLICT (kind, objid) DO UPDATE SET name = excluded.name, facts = excluded.facts;
    END IF;
  END LOOP;
END
$$;

-- The event trigger function (ddl_command_end and sql_drop). SECURITY DEFINER:
-- it writes the audit log whoever runs the DDL (a superuser, or a member of
-- the owner role), and works the same for anyone else's DDL on their own tables.
CREATE OR REPLACE FUNCTION audit._ddl_watch_end()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kinds  text[];
  v_objids oid[];
  t        record;
BEGIN
  IF to_regclass('audit.ddl_watched') IS NULL THEN  -- the audit schema is being dropped
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' THEN  -- what was dropped is gone from the catalog: compare everything
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                WHERE d.object_type IN ('table', 'function', 'procedure', 'trigger', 'rule', 'schema')) THEN
      PERFORM audit._ddl_record(TG_TAG, NULL, NULL, audit._ddl_query());
    END IF;
    RETURN;
  END IF;
  IF TG_TAG = 'ALTER SCHEMA' THEN  -- renames every object in it
    PERFORM audit._ddl_record(TG_TAG, NULL, NULL, audit._ddl_query());
    RETURN;
  END IF;
  IF TG_TAG = 'CREATE TRIGGER' THEN
    -- PostgreSQL resets a replaced trigger to ENABLE (origin only). One that
    -- was ENABLE ALWAYS and is re-created with the same definition (every
    -- migrate does that) stays ENABLE ALWAYS: nothing changed, nothing is
    -- logged, and there is no moment in which session_replication_role =
    -- replica would skip it.
    FOR t IN SELECT tr.tgrelid, tr.tgname, 'trigger ' || quote_ident(tr.tgname) || ': ' AS prefix,
                    pg_get_triggerdef(tr.oid) AS def
               FROM pg_event_trigger_ddl_commands() c JOIN pg_trigger tr ON tr.oid = c.objid
              WHERE c.classid = 'pg_trigger'::regclass AND tr.tgenabled = 'O' LOOP
      IF EXISTS (SELECT 1 FROM audit.ddl_watched b WHERE b.kind = 'table' AND b.objid = t.tgrelid
                    AND b.facts @> ARRAY[t.prefix || 'ENABLE ALWAYS', t.prefix || t.def]) THEN
        BEGIN
          EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.tgrelid::regclass, t.tgname);
        EXCEPTION WHEN insufficient_privilege THEN
          NULL;  -- a table the owner role does not own: the change is logged instead
        END;
      END IF;
    END LOOP;
  END IF;
  -- The tables and functions the command touched, and the functions the
  -- triggers of those tables run (a new trigger brings its function along).
  WITH x AS (
    SELECT CASE WHEN c.classid = 'pg_proc'::regclass THEN 'function' ELSE 'table' END AS kind,
           CASE c.classid WHEN 'pg_class'::regclass THEN c.objid
                          WHEN 'pg_proc'::regclass THEN c.objid
                          WHEN 'pg_trigger'::regclass THEN (SELECT tr.tgrelid FROM pg_trigger tr WHERE tr.oid = c.objid)
                          WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = c.objid)
           END AS objid
      FROM pg_event_trigger_ddl_commands() c),
  y AS (
    SELECT x.kind, x.objid FROM x WHERE x.objid IS NOT NULL
    UNION
    SELECT 'function', tr.tgfoid FROM x JOIN pg_trigger tr ON tr.tgrelid = x.objid
     WHERE x.kind = 'table' AND NOT tr.tgisinternal)
  SELECT array_agg(y.kind), array_agg(y.objid) INTO v_kinds, v_objids FROM y;
  IF v_kinds IS NOT NULL THEN
    PERFORM audit._ddl_record(TG_TAG, v_kinds, v_objids, audit._ddl_query());
  END IF;
END
$$;

-- Switch the watch on, after every function file (shieldx.schema.apply_functions
-- calls this last), and bring audit.ddl_watched up to date. Objects seen for
-- the first time are recorded without a log entry, so installing a fresh
-- database logs nothing; an object that differs from its last logged state
-- was changed while the watch was off, and that is logged ('UNLOGGED DDL').
CREATE OR REPLACE FUNCTION audit._ddl_watch_start()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM audit._ddl_record('UNLOGGED DDL', NULL, NULL, NULL, p_log_new => false);
  ALTER EVENT TRIGGER audit_ddl_watch ENABLE ALWAYS;  -- fires under session_replication_role = replica too
  ALTER EVENT TRIGGER audit_ddl_watch_drop ENABLE ALWAYS;
END
$$;

-- For verify(): the watch is off, or an object no longer matches its last
-- logged state (DDL while the watch was off). Reported as seq 0 of chain
-- 'ddl' (the watch) or 'ddl/<object>'.
CREATE OR REPLACE FUNCTION audit._ddl_watch_problems()
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN QUERY
    SELECT 'ddl'::text, 0::bigint, NULL::timestamptz,
           format('the DDL watch is off: event trigger %s is %s', n.evtname,
                  CASE WHEN e.oid IS NULL THEN 'missing'
                       ELSE 'not ENABLE ALWAYS but ' || audit._ddl_mode(e.evtenabled) END)
      FROM unnest(ARRAY['audit_ddl_watch', 'audit_ddl_watch_drop']) n(evtname)
      LEFT JOIN pg_event_trigger e ON e.evtname = n.evtname
     WHERE e.evtenabled IS DISTINCT FROM 'A';
  IF to_regclass('audit.ddl_watched') IS NOT NULL THEN
    RETURN QUERY
      SELECT 'ddl/' || coalesce(c.name, c.was_name), 0::bigint, NULL::timestamptz,
             format('%s %s differs from its last logged state (changed while the DDL watch was off?)',
                    c.kind, coalesce(c.name, c.was_name))
        FROM audit._ddl_changes(NULL, NULL) c
       WHERE c.was IS NOT NULL AND c.was IS DISTINCT FROM c.facts;
  END IF;
END
$$;

-- The event triggers. Made (disabled) if missing or different; switched on by
-- audit._ddl_watch_start() at the end of the migrate. Making event triggers
-- takes a superuser, as migrations are run everywhere (shieldx db migrate,
-- the Kubernetes migrate job with the admin URL).
DO $$
DECLARE
  v_tags text[] := ARRAY['ALTER FUNCTION', 'ALTER ROUTINE', 'ALTER RULE', 'ALTER SCHEMA', 'ALTER TABLE',
                         'ALTER TRIGGER', 'CREATE FUNCTION', 'CREATE RULE', 'CREATE TRIGGER'];
  e record;
BEGIN
  FOR e IN SELECT * FROM (VALUES ('audit_ddl_watch', 'ddl_command_end', v_tags),
                                 ('audit_ddl_watch_drop', 'sql_drop', NULL::text[])) v(name, event, tags)
            WHERE NOT EXISTS (SELECT 1 FROM pg_event_trigger x
                               WHERE x.evtname = v.name AND x.evtevent = v.event
                                 AND x.evtfoid = 'audit._ddl_watch_end()'::regprocedure
                                 AND x.evttags IS NOT DISTINCT FROM v.tags) LOOP
    EXECUTE format('DROP EVENT TRIGGER IF EXISTS %I', e.name);
    EXECUTE format('CREATE EVENT TRIGGER %I ON %s %s EXECUTE FUNCTION audit._ddl_watch_end()', e.name, e.event,
                   (SELECT 'WHEN TAG IN (' || string_agg(quote_literal(t), ', ') || ')' FROM unnest(e.tags) t));
    EXECUTE format('ALTER EVENT TRIGGER %I DISABLE', e.name);
  END LOOP;
END
$$;
