-- depends: 0710_audit_key_transitions
-- An idempotency key names one call of a tenant, whatever the operation
-- (db/functions/credits/idempotency.sql). The journal's own unique key tells
-- the calls that write entries (consume, grant, transfer) apart; this table
-- holds the keys of those that keep them elsewhere: an account opened, a hold
-- made, an API key made or rotated. So a consume looks for its key in one
-- small index instead of three tables, and a key's first use is in one of two
-- places. Triggers on those three tables add the key in the same statement
-- that stores the row; the primary key refuses a second operation's row with
-- the same key should anything ever skip the claim. Keys of distributed
-- transactions' legs ("dist:") and of platform operator keys (no tenant) are
-- not kept: no other call can use them. Existing rows are added by 0721, after
-- these triggers committed, so no key falls between the two.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

SET ROLE shieldx_owner;

CREATE TABLE credits.idem_keys (
  tenant_id text   NOT NULL,
  idem_key  text   NOT NULL,
  op        text   NOT NULL CHECK (op IN ('account', 'hold', 'key')),
  ref       text   NOT NULL,  -- the row's id: account_id, hold_id or key_id
  PRIMARY KEY (tenant_id, idem_key)
);

-- The three tables' new rows, once per statement (a batch of holds is one INSERT).
CREATE FUNCTION credits._register_idem_keys()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_TABLE_NAME = 'accounts' THEN
    INSERT INTO credits.idem_keys (tenant_id, idem_key, op, ref)
    SELECT n.tenant_id, n.idem_key, 'account', n.account_id::text FROM new_rows AS n;
  ELSIF TG_TABLE_NAME = 'holds' THEN
    INSERT INTO credits.idem_keys (tenant_id, idem_key, op, ref)
    SELECT n.tenant_id, n.idem_key, 'hold', n.hold_id::text FROM new_rows AS n
     WHERE pg_catalog.left(n.idem_key, 5) <> 'dist:';
  ELSE
    INSERT INTO credits.idem_keys (tenant_id, idem_key, op, ref)
    SELECT n.tenant_id, n.idem_key, 'key', n.key_id FROM new_rows AS n WHERE n.tenant_id IS NOT NULL;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER idem_keys_register AFTER INSERT ON credits.accounts
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION credits._register_idem_keys();
CREATE TRIGGER idem_keys_register AFTER INSERT ON credits.holds
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION credits._register_idem_keys();
CREATE TRIGGER idem_keys_register AFTER INSERT ON auth.keys
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION credits._register_idem_keys();
ALTER TABLE credits.accounts ENABLE ALWAYS TRIGGER idem_keys_register;
ALTER TABLE credits.holds ENABLE ALWAYS TRIGGER idem_keys_register;
ALTER TABLE auth.keys ENABLE ALWAYS TRIGGER idem_keys_register;

RESET ROLE;

COMMENT ON TABLE credits.idem_keys IS
  'The idempotency keys of the calls that do not write the journal (an account opened, a hold made, an API key '
  'made or rotated), per tenant, added by triggers on those tables: with the journal''s unique key, where each '
  'key was first used (credits._idem_key_uses).';
