-- depends: 0205_drop_retired_functions 0300_auth
-- What each table holds, for \d+ and \dt+ (the functions document themselves
-- with COMMENT ON FUNCTION in db/functions/). A comment is metadata only.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
COMMENT ON TABLE ops.error_catalog IS
  'Named errors: SQLSTATE (SXnnn), name, HTTP status and title of every refusal the SQL API raises; the API maps '
  'errors to HTTP from here.';
COMMENT ON TABLE ops.jobs IS
  'The job registry: name, cron schedule, command and description of every periodic job; pg_cron follows it '
  '(ops._sync_cron).';
COMMENT ON TABLE credits.tenants IS
  'Tenants: the owners of accounts and API keys, identified by a chosen id.';
COMMENT ON TABLE credits.accounts IS
  'Accounts: an integer balance, the amount held by active holds, a status (open, frozen, closed) and the journal '
  'position (entry_seq).';
COMMENT ON TABLE credits.entries IS
  'The journal: one append-only row per balance change, numbered per account (seq), with the balance after it and '
  'the idempotency key of the call.';
COMMENT ON TABLE credits.entries_archive IS
  'Journal entries moved here, unchanged, by retention (audit.cleanup_old_transactions); credits.reconcile() '
  'counts both tables.';
COMMENT ON TABLE credits.holds IS
  'Reservations of funds: active until captured, aborted or expired; an active hold counts in its account''s '
  'held.';
COMMENT ON TABLE credits.dist_transactions IS
  'Coordinator records of distributed transactions: legs, deadline, state and the logged decision.';
COMMENT ON TABLE credits.dist_participants IS
  'The legs of distributed transactions: account, amount, vote, hold and outcome.';
COMMENT ON TABLE credits.dist_events IS
  'Every state change of a distributed transaction, append-only.';
COMMENT ON TABLE credits.prepared_reaper_log IS
  'Native prepared transactions (PREPARE TRANSACTION) found overdue, and what was done with them.';
COMMENT ON TABLE audit.log IS
  'The tamper-evident audit log: hash chains (streams) of entries, one per audited row change or DDL command.';
COMMENT ON TABLE audit.heads IS
  'The head of every non-ledger chain (a cache; verification trusts the log).';
COMMENT ON TABLE audit.checkpoints IS
  'Signed checkpoints: an HMAC over a Merkle root of every chain head, each chained to the previous signature.';
COMMENT ON TABLE audit.checkpoint_heads IS
  'The chain heads each checkpoint covered (pruned after the keep window, except the last checkpoint''s).';
COMMENT ON TABLE audit.checkpoint_prunes IS
  'How far checkpoint heads were pruned: exporting a checkpoint at or below through_checkpoint fails with SX207.';
COMMENT ON TABLE audit.anchors IS
  'Where a chain starts after retention: the last removed entry''s seq and hash, signed.';
COMMENT ON TABLE audit.ddl_watched IS
  'The DDL watch''s last logged state of every watched object (audited or append-only tables and their trigger '
  'functions), as sorted facts; a cache of the audit log.';
COMMENT ON TABLE vault.keys IS
  'Key ids and states (current, previous, retired) per purpose; the key material lives in files, never in a '
  'table.';
COMMENT ON TABLE vault.payments IS
  'Card top-ups: card number and expiry as AES-256-GCM ciphertexts bound to their row, the last four digits, the '
  'data subject and the masked IP.';
COMMENT ON TABLE privacy.subject_keys IS
  'Per-subject data keys, wrapped by the current subject master key; erasure deletes the row.';
COMMENT ON TABLE privacy.erasures IS
  'Erased data subjects: when, under which idempotency key, and how many payments it affected.';
COMMENT ON TABLE auth.keys IS
  'API keys: public key id, sha256 of the secret, tenant (NULL for operator keys), roles, rate limit, expiry and '
  'revocation.';
COMMENT ON TABLE auth.buckets IS
  'Token buckets per API key, shared by every API replica (auth.take).';
COMMENT ON TABLE auth.failures IS
  'Failed authentications per minute, reason and key id (never the presented secret).';
COMMENT ON TABLE shadow.rules IS
  'Rules evaluated in shadow experiments.';
COMMENT ON TABLE shadow.rule_versions IS
  'Immutable, numbered versions of each rule with their JSON definition.';
COMMENT ON TABLE shadow.experiments IS
  'Champion/challenger experiments: the two rule versions, metric, canary plan, guardrails and current state.';
COMMENT ON TABLE shadow.batches IS
  'Ingested observation batches, one per (experiment, idempotency key): a replay is answered from here.';
COMMENT ON TABLE shadow.observations IS
  'Raw observations (arm, success, error, latency), folded exactly once into shadow.arm_stats by the job.';
COMMENT ON TABLE shadow.fold_state IS
  'The fold''s watermark: every observation inserted below the horizon is folded.';
COMMENT ON TABLE shadow.arm_stats IS
  'Folded counts per experiment, canary step and arm: the Beta posteriors come from these.';
COMMENT ON TABLE shadow.latency_hist IS
  'Folded latency histograms (log buckets) for the p95 guardrails.';
COMMENT ON TABLE shadow.evaluations IS
  'The job''s latest evaluation of each experiment: posteriors, decision and guardrails.';
COMMENT ON TABLE shadow.deployment_events IS
  'The deployment audit trail of each experiment: one append-only row per transition.';
