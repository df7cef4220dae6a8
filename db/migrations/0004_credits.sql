-- depends: 0003_ops
-- The credits ledger: tenants, accounts with integer balances, and an
-- append-only journal of entries. Rules that a constraint can hold live here;
-- the functions in db/functions/credits/ do everything else.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA credits AUTHORIZATION shieldx_owner;
SET ROLE shieldx_owner;

CREATE TABLE credits.tenants (
  tenant_id  text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credits.accounts (
  account_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id  text   NOT NULL REFERENCES credits.tenants,
  name       text   NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- balance: credits owned; held: the part reserved by active holds.
  balance    bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
  held       bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
  -- Number of journal entries; the next entry of this account gets entry_seq + 1,
  -- so per-account history is gap-free and ordered by the row lock, not by a sequence.
  entry_seq  bigint NOT NULL DEFAULT 0 CHECK (entry_seq >= 0),
  status     text   NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'frozen', 'closed')),
  idem_key   text   NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- available = balance - held can never be negative.
  CONSTRAINT accounts_held_within_balance CHECK (held <= balance),
  CONSTRAINT accounts_name_unique UNIQUE (tenant_id, name),
  CONSTRAINT accounts_idem_unique UNIQUE (tenant_id, idem_key)
) WITH (fillfactor = 80);  -- room for HOT updates of the balance

CREATE TABLE credits.entries (
  entry_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id    bigint NOT NULL REFERENCES credits.accounts,
  tenant_id     text   NOT NULL,
  seq           bigint NOT NULL CHECK (seq > 0),
  kind          text   NOT NULL CHECK (kind IN ('grant', 'consume', 'transfer_out', 'transfer_in')),
  amount        bigint NOT NULL CHECK (amount <> 0),
  balance_after bigint NOT NULL CHECK (balance_after >= 0),
  reason        text   CHECK (length(reason) <= 500),
  idem_key      text   NOT NULL,
  -- 0 for the entry that answers the call; a transfer's credit leg is 1.
  leg           smallint NOT NULL DEFAULT 0 CHECK (leg >= 0),
  counterparty  bigint,
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT entries_account_seq_unique UNIQUE (account_id, seq),
  -- Idempotency: a key names one call per tenant.
  CONSTRAINT entries_idem_unique UNIQUE (tenant_id, idem_key, leg)
);

RESET ROLE;
