-- Roles are shared by every database of the cluster: drop them only when no
-- other database still depends on them.
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['shieldx_auditor', 'shieldx_readonly', 'shieldx_app', 'shieldx_owner'] LOOP
    BEGIN
      EXECUTE format('DROP ROLE IF EXISTS %I', r);
    EXCEPTION WHEN dependent_objects_still_exist THEN
      RAISE NOTICE 'role % is still used elsewhere in the cluster; kept', r;
    END;
  END LOOP;
END
$$;
