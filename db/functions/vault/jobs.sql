-- Jobs of the audit log and the vault. Registered here, in a file that sorts
-- after db/functions/ops/ (where ops._register_job is made), so a fresh
-- database gets them in the first pass.
SELECT ops._register_job('shieldx-audit-checkpoint', '*/15 * * * *', 'SELECT * FROM audit.checkpoint(''periodic'')',
  'Sign a Merkle root over every audit chain head');
SELECT ops._register_job('shieldx-audit-prune-heads', '*/10 * * * *', 'SELECT * FROM audit.prune_checkpoint_heads()',
  'Remove the chain heads of audit checkpoints older than shieldx.audit_checkpoint_keep (default 1 day), '
  || 'never the last''s');
SELECT ops._register_job('shieldx-audit-retention', '17 3 * * *', 'SELECT * FROM audit.cleanup_old_transactions(400)',
  'Archive journal and audit entries older than 400 days behind a signed checkpoint');
SELECT ops._register_job('shieldx-vault-reencrypt', '*/10 * * * *',
  'SELECT vault.reencrypt(5000); SELECT * FROM vault.retire_unused_keys()',
  'Re-encrypt payment data under the current key; destroy keys nothing uses');
