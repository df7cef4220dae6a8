-- depends: 0005_jobs
-- Access control: API keys (stored only as hashes), per-key token buckets,
-- and a count of failed authentications. Functions live in db/functions/auth/.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA auth AUTHORIZATION shieldx_owner;
SET ROLE shieldx_owner;

-- A key is presented as sx_<key_id>_<secret>. key_id is public (the primary
-- key, so lookup is O(1)); only sha256(secret) is stored. Secrets are 256
-- random bits, not passwords, so a fast hash is safe and keeps checks cheap.
-- tenant_id NULL marks a platform operator key (acts on any tenant).
CREATE TABLE auth.keys (
  key_id       text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
  tenant_id    text REFERENCES credits.tenants,
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  roles        text[] NOT NULL
               CHECK (cardinality(roles) BETWEEN 1 AND 5
                      AND roles <@ ARRAY['consumer', 'billing', 'admin', 'auditor', 'operator']),
  secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
  -- Token bucket: refills at rate_per_s tokens per second up to burst.
  rate_per_s   double precision NOT NULL CHECK (rate_per_s > 0 AND rate_per_s <= 1000000),
  burst        double precision NOT NULL CHECK (burst >= 1 AND burst <= 10000000),
  idem_key     text NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 255),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  replaced_by  text REFERENCES auth.keys,
  -- Only operator keys have no tenant, and operator keys have no tenant.
  CONSTRAINT keys_operator_has_no_tenant CHECK ((tenant_id IS NULL) = ('operator' = ANY (roles))),  -- noqa: LT06
  -- Idempotency of create/rotate: a key names one creation per tenant
  -- (operator keys share the NULL tenant).
  CONSTRAINT keys_idem_unique UNIQUE NULLS NOT DISTINCT (tenant_id, idem_key)
);
CREATE INDEX keys_tenant ON auth.keys (tenant_id, created_at);

-- Bucket state, one row per key, written by every lease. UNLOGGED: no WAL
-- and no flush on commit, so a lease costs little; after a crash or failover
-- the table is empty and every bucket starts full again (a missing row means
-- a full bucket), which is the only thing lost.
CREATE UNLOGGED TABLE auth.buckets (
  key_id      text PRIMARY KEY,
  tokens      double precision NOT NULL,
  refilled_at timestamptz NOT NULL,
  last_granted int NOT NULL DEFAULT 0
) WITH (fillfactor = 50);  -- HOT updates

-- Failed authentications, counted per minute and reason (and key id when the
-- id is a real key). Never the presented secret.
CREATE TABLE auth.failures (
  minute  timestamptz NOT NULL,
  reason  text NOT NULL CHECK (reason IN ('unknown_key', 'bad_secret', 'revoked', 'expired', 'malformed')),
  key_id  text NOT NULL DEFAULT '',
  count   bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
  last_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (minute, reason, key_id)
);

RESET ROLE;
