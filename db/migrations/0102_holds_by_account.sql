-- depends: 0101_dist_transactions
-- An account's holds page by hold_id (credits.list_holds) without scanning
-- every hold; the expiry job finds expired holds through the index of active
-- holds per account instead (active holds are few), so the index by expiry goes.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SET ROLE shieldx_owner;
-- CONCURRENTLY cannot run inside the transaction yoyo wraps a migration in.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX holds_by_account ON credits.holds (account_id, hold_id);
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX credits.holds_active_by_expiry;
RESET ROLE;
