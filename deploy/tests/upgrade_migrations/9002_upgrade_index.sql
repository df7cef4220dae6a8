-- transactional: false
-- depends: 9001_upgrade_expand
-- An index built without blocking writes: CREATE INDEX CONCURRENTLY cannot run
-- in a transaction, so the migration is its own, non-transactional one. A
-- build that failed (a lock timeout, say) leaves an INVALID index behind; the
-- DROP first makes a retry start clean, and yoyo runs the DROP of the rollback
-- file when the CREATE fails.
DROP INDEX CONCURRENTLY IF EXISTS credits.accounts_upgrade_note;
CREATE INDEX CONCURRENTLY accounts_upgrade_note ON credits.accounts (upgrade_note) WHERE upgrade_note IS NOT NULL;
