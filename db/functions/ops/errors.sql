-- Raising a named error. Every failure of the SQL API goes through here, so
-- psql users and the HTTP API see the same SQLSTATE, message and detail.
-- DETAIL carries a JSON object of facts (ids, amounts) for programs to read.
CREATE OR REPLACE FUNCTION ops._fail(p_sqlstate text, p_message text, p_detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_title text;
BEGIN
  SELECT title INTO v_title FROM ops.error_catalog WHERE sqlstate = p_sqlstate;
  IF v_title IS NULL THEN
    RAISE EXCEPTION 'unregistered error code %', p_sqlstate USING ERRCODE = 'XX000';
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = p_sqlstate,
    MESSAGE = p_message,
    DETAIL  = coalesce(p_detail, '{}')::text,
    HINT    = v_title;
END
$$;

-- Read by the API at start-up and by anyone who wants the list.
CREATE OR REPLACE FUNCTION ops.error_codes()
RETURNS TABLE (sqlstate text, name text, http_status int, title text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT sqlstate::text, name, http_status, title FROM ops.error_catalog ORDER BY sqlstate;
$$;
COMMENT ON FUNCTION ops.error_codes() IS
  'The catalog of named errors: SQLSTATE, name, HTTP status and title of every SXnnn error the SQL API raises.';

-- A named error as a value: what ops._fail raises, returned instead of raised,
-- so a caller can report it without a subtransaction (a batch's refused items).
-- ops._fail_problem raises it; a NULL problem raises nothing.
CREATE OR REPLACE FUNCTION ops._problem(p_sqlstate text, p_message text, p_detail jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.jsonb_build_object('sqlstate', p_sqlstate, 'message', p_message,
                                       'detail', coalesce(p_detail, '{}'::jsonb))
$$;

CREATE OR REPLACE FUNCTION ops._fail_problem(p jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  IF p IS NOT NULL THEN
    PERFORM ops._fail(p ->> 'sqlstate', p ->> 'message', p -> 'detail');
  END IF;
END
$$;
