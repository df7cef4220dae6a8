-- What /health/ready asks: is this server the primary, and which migrations
-- has it applied? (yoyo records them in public._yoyo_migration.)
CREATE OR REPLACE FUNCTION ops.health(
  OUT is_primary boolean,
  OUT server_version text,
  OUT migrations text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  is_primary := NOT pg_is_in_recovery();
  server_version := current_setting('server_version');
  IF to_regclass('public._yoyo_migration') IS NULL THEN
    migrations := '{}';
  ELSE
    EXECUTE 'SELECT coalesce(array_agg(migration_id ORDER BY migration_id), ''{}'') FROM public._yoyo_migration'
      INTO migrations;
  END IF;
END
$$;
COMMENT ON FUNCTION ops.health() IS
  'What the readiness probe asks: whether this server is the primary, its version, and the migrations applied.';
