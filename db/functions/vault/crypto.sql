-- The vault's PL/Python entry points: thin calls into the keyring module
-- (keyring.py, embedded by keyring.sql, loaded by ops._py_load). Only these
-- owner-only functions ever read a key; keys are cached per session and never
-- returned to SQL. Ciphertext format and associated data: see keyring.py.

CREATE OR REPLACE FUNCTION vault._current_key_id(p_purpose text)
RETURNS text
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).current(p_purpose)
$py$;

-- Whether this node holds a usable key file of that id.
CREATE OR REPLACE FUNCTION vault._key_installed(p_purpose text, p_key_id text)
RETURNS boolean
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).installed(p_purpose, p_key_id)
$py$;

-- Name a key in this node's CURRENT file.
CREATE OR REPLACE FUNCTION vault._set_current_file(p_purpose text, p_key_id text)
RETURNS void
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
GD['vault.keyring'].session_keyring(plpy).set_current(p_purpose, p_key_id)
$py$;

-- The ids of the key files this node holds for a purpose.
CREATE OR REPLACE FUNCTION vault._local_key_files(p_purpose text)
RETURNS text[]
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).files(p_purpose)
$py$;

-- A new random key becomes current in this node's keyring (on a single node:
-- vault.rotate_key(text)). Returns its id.
CREATE OR REPLACE FUNCTION vault._new_key_file(p_purpose text)
RETURNS text
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).new_key(p_purpose)
$py$;

CREATE OR REPLACE FUNCTION vault._destroy_key_file(p_purpose text, p_key_id text)
RETURNS void
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
GD['vault.keyring'].session_keyring(plpy).destroy(p_purpose, p_key_id)
$py$;

-- Encrypt under the purpose's current key (NULL stays NULL).
CREATE OR REPLACE FUNCTION vault._encrypt(p_purpose text, p_plain text, p_aad bytea)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
if p_plain is None:
    return None
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).encrypt(p_purpose, p_plain.encode(), bytes(p_aad))
$py$;

CREATE OR REPLACE FUNCTION vault._decrypt(p_purpose text, p_blob bytea, p_aad bytea)
RETURNS text
LANGUAGE plpython3u
AS $py$
if p_blob is None:
    return None
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).decrypt(p_purpose, p_blob, bytes(p_aad)).decode()
$py$;

CREATE OR REPLACE FUNCTION vault._key_id_of(p_blob bytea)
RETURNS text
LANGUAGE plpython3u IMMUTABLE
AS $py$
if p_blob is None:
    return None
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].key_id_of(p_blob)
$py$;

-- HMAC-SHA256 under an audit key (NULL: the current one). Returns the key id
-- used and the signatures of every message, in order.
CREATE OR REPLACE FUNCTION vault._hmac(p_key_id text, p_msgs bytea[], OUT key_id text, OUT sigs bytea[])
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
sx = GD['vault.keyring'].session_keyring(plpy)
kid = p_key_id or sx.current('audit')
return kid, [sx.hmac('audit', kid, bytes(m)) for m in p_msgs]
$py$;

-- Associated data: which row and field a ciphertext belongs to (length-prefixed like audit._f).
CREATE OR REPLACE FUNCTION vault._aad(p_kind text, p_tenant text, p_account bigint, p_entry bigint, p_field text)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.convert_to('SXV1' || audit._f(p_kind) || audit._f(p_tenant) || audit._f(p_account::text)
                               || audit._f(p_entry::text) || audit._f(p_field), 'UTF8')
$$;

-- A card's replay fingerprint: HMAC-SHA256 under payment key p_key_id of the
-- card number and expiry, bound to the payment's row (so equal cards on two
-- rows give unrelated values). The number itself is never stored.
CREATE OR REPLACE FUNCTION vault._card_hmac(
  p_key_id text, p_tenant text, p_account bigint, p_entry bigint, p_pan text, p_expiry text)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
plan = plpy.prepare("SELECT vault._aad('card', $1, $2, $3, 'fingerprint') AS aad", ["text", "bigint", "bigint"])
aad = bytes(plpy.execute(plan, [p_tenant, p_account, p_entry])[0]["aad"])
msg = aad + len(p_pan).to_bytes(4, "big") + p_pan.encode() + len(p_expiry).to_bytes(4, "big") + p_expiry.encode()
return GD['vault.keyring'].session_keyring(plpy).hmac('payment', p_key_id, msg)
$py$;
