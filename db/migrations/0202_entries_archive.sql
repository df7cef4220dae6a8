-- depends: 0201_vault
-- Retention (audit.cleanup_old_transactions) moves old journal entries here,
-- unchanged, so credits.reconcile() can still add every account up.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SET ROLE shieldx_owner;
CREATE TABLE credits.entries_archive (LIKE credits.entries INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE credits.entries_archive ADD PRIMARY KEY (entry_id),
  ADD CONSTRAINT entries_archive_account_seq_unique UNIQUE (account_id, seq);
ALTER TABLE credits.entries_archive ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
RESET ROLE;
