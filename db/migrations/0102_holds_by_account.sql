-- depends: 0101_dist_transactions
-- An account's holds page by hold_id (credits.list_holds) without scanning
-- every hold; the expiry job finds expired holds through the index of active
-- holds per account instead (active holds are few), so the index by expiry goes.
SET ROLE shieldx_owner;
CREATE INDEX holds_by_account ON credits.holds (account_id, hold_id);
DROP INDEX credits.holds_active_by_expiry;
RESET ROLE;
