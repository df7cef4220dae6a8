-- Applied last, after every other function file. Ownership and grants follow
-- two conventions, so a new function needs no edit here:
--   * every object in a product schema is owned by shieldx_owner, so SECURITY
--     DEFINER functions run with the owner's rights, never a superuser's;
--   * a function whose name starts with "_" is private: nobody but the owner
--     may execute it. Others are public: shieldx_app may execute them all,
--     shieldx_readonly those that are STABLE or IMMUTABLE.
-- Nobody but the owner has any write privilege on any table.
DO $$
DECLARE
  s text;
  f record;
  t record;
BEGIN
  -- ops.health() (owner's rights) reports the applied migrations.
  IF to_regclass('public._yoyo_migration') IS NOT NULL THEN
    GRANT SELECT ON public._yoyo_migration TO shieldx_owner;
  END IF;
  FOR s IN SELECT nspname FROM pg_namespace WHERE nspowner = 'shieldx_owner'::regrole LOOP
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO shieldx_app, shieldx_readonly, shieldx_auditor', s);
    FOR t IN SELECT c.oid::regclass AS rel, c.relowner FROM pg_class c
              WHERE c.relnamespace = s::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
      -- Only when it differs: ALTER TABLE ... OWNER takes an ACCESS EXCLUSIVE lock
      -- even when nothing changes, and this file runs on every migrate while the
      -- API writes to these tables. GRANT and REVOKE take no table lock.
      IF t.relowner <> 'shieldx_owner'::regrole THEN
        EXECUTE format('ALTER TABLE %s OWNER TO shieldx_owner', t.rel);
      END IF;
      EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, shieldx_app, shieldx_readonly', t.rel);
      EXECUTE format('GRANT SELECT ON %s TO shieldx_readonly', t.rel);
    END LOOP;
    FOR f IN SELECT p.oid::regprocedure AS fn, p.proname, p.provolatile, p.prokind, p.proowner
               FROM pg_proc p WHERE p.pronamespace = s::regnamespace LOOP
      IF f.proowner <> 'shieldx_owner'::regrole THEN
        EXECUTE format('ALTER ROUTINE %s OWNER TO shieldx_owner', f.fn);
      END IF;
      EXECUTE format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f.fn);
      IF left(f.proname, 1) <> '_' THEN
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO shieldx_app', f.fn);
        IF f.provolatile IN ('s', 'i') THEN
          EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO shieldx_readonly', f.fn);
        END IF;
      END IF;
    END LOOP;
  END LOOP;
END
$$;
