SET ROLE shieldx_owner;
CREATE INDEX holds_active_by_expiry ON credits.holds (expires_at) WHERE status = 'active';
DROP INDEX credits.holds_by_account;
RESET ROLE;
