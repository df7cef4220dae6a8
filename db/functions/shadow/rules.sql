-- Rules and their versions. A rule is created idempotently by its id; a
-- version is immutable and numbered 1, 2, ... per rule under the rule's row
-- lock, so concurrent additions cannot take the same number.
CREATE OR REPLACE FUNCTION shadow.create_rule(
  p_rule_id text, p_name text,
  OUT rule_id text, OUT name text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r shadow.rules;
BEGIN
  IF p_rule_id IS NULL OR p_rule_id !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
    PERFORM ops._fail('SX007', 'rule id must match ^[a-z0-9][a-z0-9_.-]{0,62}$',
                      jsonb_build_object('argument', 'rule_id'));
  END IF;
  PERFORM shadow._check_text('name', p_name, 200);
  INSERT INTO shadow.rules AS x (rule_id, name) VALUES (p_rule_id, p_name)
  ON CONFLICT ON CONSTRAINT rules_pkey DO NOTHING
  RETURNING x.* INTO r;
  replayed := NOT FOUND;
  IF replayed THEN
    SELECT * INTO r FROM shadow.rules x WHERE x.rule_id = p_rule_id;
    IF r.name IS DISTINCT FROM p_name THEN
      PERFORM ops._fail('SX011', format('rule %s already exists with another name', p_rule_id),
                        jsonb_build_object('rule_id', p_rule_id));
    END IF;
  END IF;
  rule_id := r.rule_id; name := r.name; created_at := r.created_at;
END
$$;
COMMENT ON FUNCTION shadow.create_rule(text, text) IS
  'Create a rule, idempotent by its id. Returns the rule (replayed on a repeat); SX007 invalid id or name, SX011 '
  'id taken with another name.';

CREATE OR REPLACE FUNCTION shadow.add_rule_version(
  p_rule_id text, p_definition jsonb, p_idem_key text,
  OUT rule_id text, OUT version int, OUT definition jsonb, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v shadow.rule_versions;
BEGIN
  PERFORM shadow._check_key(p_idem_key);
  IF p_definition IS NULL OR jsonb_typeof(p_definition) <> 'object' THEN
    PERFORM ops._fail('SX007', 'definition must be a JSON object', jsonb_build_object('argument', 'definition'));
  END IF;
  -- The rule's row lock serializes version numbering.
  PERFORM 1 FROM shadow.rules r WHERE r.rule_id = p_rule_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX402', format('rule %s not found', coalesce(p_rule_id, 'NULL')),
                      jsonb_build_object('rule_id', p_rule_id));
  END IF;
  SELECT * INTO v FROM shadow.rule_versions x WHERE x.rule_id = p_rule_id AND x.idem_key = p_idem_key;
  IF FOUND THEN
    IF v.definition IS DISTINCT FROM p_definition THEN
      PERFORM ops._fail('SX005', format('idempotency key %L was used for version %s of rule %s', p_idem_key,
                                        v.version, p_rule_id), jsonb_build_object('version', v.version));
    END IF;
    replayed := true;
  ELSE
    INSERT INTO shadow.rule_versions AS x (rule_id, version, definition, idem_key)
    SELECT p_rule_id, coalesce(max(y.version), 0) + 1, p_definition, p_idem_key
      FROM shadow.rule_versions y WHERE y.rule_id = p_rule_id
    RETURNING x.* INTO v;
    replayed := false;
  END IF;
  rule_id := v.rule_id; version := v.version; definition := v.definition; created_at := v.created_at;
END
$$;
COMMENT ON FUNCTION shadow.add_rule_version(text, jsonb, text) IS
  'Add the next immutable version (1, 2, ...) of a rule with its JSON definition, idempotent by p_idem_key. '
  'Returns the version; SX402 unknown rule, SX007 invalid definition, SX005 key reused with another definition.';

CREATE OR REPLACE FUNCTION shadow.list_rule_versions(p_rule_id text)
RETURNS TABLE (rule_id text, version int, definition jsonb, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT v.rule_id, v.version, v.definition, v.created_at FROM shadow.rule_versions v
   WHERE v.rule_id = p_rule_id ORDER BY v.version;
$$;
COMMENT ON FUNCTION shadow.list_rule_versions(text) IS
  'A rule''s versions with their definitions, in order.';
