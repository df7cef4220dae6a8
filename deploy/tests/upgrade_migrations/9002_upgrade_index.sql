-- transactional: false
-- depends: 9001_upgrade_expand
-- An index built without blocking writes: CREATE INDEX CONCURRENTLY cannot run
-- in a transaction, so the migration is its own, non-transactional one (yoyo
-- runs each statement on its own; the SETs hold for the migration's
-- connection). A build that failed (a lock timeout, say) leaves an INVALID
-- index behind: the DROP first makes a retry start clean (IF NOT EXISTS would
-- keep the invalid index), and yoyo runs the rollback file's DROP when the
-- CREATE fails.
-- squawk-ignore-file ban-concurrent-index-creation-in-transaction, prefer-robust-stmts
SET lock_timeout = '2s';
SET statement_timeout = '10min';
DROP INDEX CONCURRENTLY IF EXISTS credits.accounts_upgrade_note;
CREATE INDEX CONCURRENTLY accounts_upgrade_note ON credits.accounts (upgrade_note) WHERE upgrade_note IS NOT NULL;
