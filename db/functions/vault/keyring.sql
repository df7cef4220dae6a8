-- Keyrings: key material lives in files outside the database, in
-- <shieldx.key_dir>/<purpose>/<key_id>.key (32 random bytes, hex; the
-- directory belongs to the server's OS user, mode 0700), with CURRENT naming
-- the key new data uses. Only these PL/Python functions (owner-only, as every
-- "_" function) ever read a key; keys are cached per session in GD and never
-- returned to SQL. Ciphertexts are AES-256-GCM:
--   0x01 || len(key_id) || key_id || 96-bit random nonce || ciphertext || tag
-- with associated data naming the row and field the value belongs to, so a
-- value copied to another row (or another column) fails to decrypt.

-- Installs the shared Python helpers in GD (once per session).
CREATE OR REPLACE FUNCTION vault._py()
RETURNS void
LANGUAGE plpython3u
AS $py$
import os, hmac, hashlib, secrets, time

class Keyring:
    def __init__(self):
        self.cache = {}

    def base(self):
        # Only a superuser's setting counts: ALTER DATABASE ... SET, else the
        # server's configuration files (ALTER SYSTEM wins). Never the session's
        # value: a session could SET the placeholder to a directory of its own.
        r = plpy.execute("""SELECT cfg FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) cfg
                             WHERE s.setrole = 0 AND cfg LIKE 'shieldx.key_dir=%'
                               AND s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                                     WHERE datname = current_database())""")
        if r:
            return r[0]['cfg'].split('=', 1)[1]
        found = None
        for name in ('postgresql.conf', 'postgresql.auto.conf'):  # the server runs in its data directory
            try:
                with open(name) as f:
                    for line in f:
                        k, _, v = line.split('#', 1)[0].partition('=')
                        if k.strip() == 'shieldx.key_dir' and v.strip():
                            found = v.strip().strip("'")
            except OSError:
                pass
        return found or os.path.join(os.getcwd(), '..', 'keys')

    def fail(self, msg, facts='{}'):
        plpy.error(msg, detail=facts, hint='Key unavailable', sqlstate='SX202')

    def current(self, purpose):
        try:
            with open(os.path.join(self.base(), purpose, 'CURRENT')) as f:
                return f.read().strip()
        except OSError as e:
            self.fail('no current %s key: %s' % (purpose, e.strerror))

    def key(self, purpose, key_id):
        k = (purpose, key_id)
        if k not in self.cache:
            try:
                with open(os.path.join(self.base(), purpose, key_id + '.key')) as f:
                    raw = bytes.fromhex(f.read().strip())
            except (OSError, ValueError):
                self.fail('%s key %s is not available' % (purpose, key_id),
                          '{"purpose": "%s", "key_id": "%s"}' % (purpose, key_id))
            if len(raw) != 32:
                self.fail('%s key %s is not 256 bits' % (purpose, key_id))
            self.cache[k] = raw
        return self.cache[k]

    def new_key(self, purpose):
        d = os.path.join(self.base(), purpose)
        os.makedirs(d, mode=0o700, exist_ok=True)
        key_id = 'k' + time.strftime('%Y%m%d%H%M%S', time.gmtime()) + secrets.token_hex(3)
        path = os.path.join(d, key_id + '.key')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(secrets.token_hex(32))
            f.flush(); os.fsync(f.fileno())
        tmp = os.path.join(d, 'CURRENT.tmp')
        with open(tmp, 'w') as f:
            f.write(key_id + '\n'); f.flush(); os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, os.path.join(d, 'CURRENT'))
        return key_id

    def destroy(self, purpose, key_id):
        self.cache.pop((purpose, key_id), None)
        try:
            os.unlink(os.path.join(self.base(), purpose, key_id + '.key'))
        except FileNotFoundError:
            pass

    def encrypt(self, purpose, plaintext, aad, key_id=None, raw=None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        if raw is None:
            key_id = key_id or self.current(purpose)
            raw = self.key(purpose, key_id)
        kid = (key_id or '').encode()
        nonce = os.urandom(12)
        return b'\x01' + bytes([len(kid)]) + kid + nonce + AESGCM(raw).encrypt(nonce, plaintext, aad)

    def key_id_of(self, blob):
        blob = bytes(blob)
        if not blob or blob[0] != 1:
            plpy.error('unknown ciphertext format', hint='Decryption failed', sqlstate='SX203')
        return blob[2:2 + blob[1]].decode()

    def decrypt(self, purpose, blob, aad, raw=None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.exceptions import InvalidTag
        blob = bytes(blob)
        key_id = self.key_id_of(blob)
        n = 2 + blob[1]
        if raw is None:
            raw = self.key(purpose, key_id)
        try:
            return AESGCM(raw).decrypt(blob[n:n + 12], blob[n + 12:], aad)
        except InvalidTag:
            plpy.error('ciphertext does not belong here or was altered', hint='Decryption failed',
                       sqlstate='SX203')

    def hmac(self, purpose, key_id, msg):
        return hmac.new(self.key(purpose, key_id), msg, hashlib.sha256).digest()

GD['sx'] = Keyring()
$py$;

CREATE OR REPLACE FUNCTION vault._current_key_id(p_purpose text)
RETURNS text
LANGUAGE plpython3u
AS $py$
if 'sx' not in GD:
    plpy.execute('SELECT vault._py()')
return GD['sx'].current(p_purpose)
$py$;

-- A new key becomes current (the previous one stays readable). Returns its id.
CREATE OR REPLACE FUNCTION vault._new_key_file(p_purpose text)
RETURNS text
LANGUAGE plpython3u
AS $py$
if 'sx' not in GD:
    plpy.execute('SELECT vault._py()')
return GD['sx'].new_key(p_purpose)
$py$;

CREATE OR REPLACE FUNCTION vault._destroy_key_file(p_purpose text, p_key_id text)
RETURNS void
LANGUAGE plpython3u
AS $py$
if 'sx' not in GD:
    plpy.execute('SELECT vault._py()')
GD['sx'].destroy(p_purpose, p_key_id)
$py$;

-- Encrypt under the purpose's current key (NULL stays NULL).
CREATE OR REPLACE FUNCTION vault._encrypt(p_purpose text, p_plain text, p_aad bytea)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
if p_plain is None:
    return None
if 'sx' not in GD:
    plpy.execute('SELECT vault._py()')
return GD['sx'].encrypt(p_purpose, p_plain.encode(), bytes(p_aad))
$py$;

CREATE OR REPLACE FUNCTION vault._decrypt(p_purpose text, p_blob bytea, p_aad bytea)
RETURNS text
LANGUAGE plpython3u
AS $py$
if p_blob is None:
    return None
if 'sx' not in GD:
    plpy.execute('SELECT vault._py()')
return GD['sx'].decrypt(p_purpose, p_blob, bytes(p_aad)).decode()
$py$;

CREATE OR REPLACE FUNCTION vault._key_id_of(p_blob bytea)
RETURNS text
LANGUAGE plpython3u IMMUTABLE
AS $py$
if p_blob is None:
    return None
b = bytes(p_blob)
return b[2:2 + b[1]].decode() if b and b[0] == 1 else None
$py$;

-- HMAC-SHA256 under an audit key (NULL: the current one). Returns the key id
-- used and the signatures of every message, in order.
CREATE OR REPLACE FUNCTION vault._hmac(p_key_id text, p_msgs bytea[], OUT key_id text, OUT sigs bytea[])
LANGUAGE plpython3u
AS $py$
if 'sx' not in GD:
    plpy.execute('SELECT vault._py()')
sx = GD['sx']
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
