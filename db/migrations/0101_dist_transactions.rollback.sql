-- CASCADE: functions taking these tables' row types depend on them; the
-- function files bring them back on the next migrate.
SET ROLE shieldx_owner;
DROP TABLE credits.prepared_reaper_log CASCADE;
ALTER TABLE credits.holds DROP CONSTRAINT holds_dist_tx_fk;
DROP INDEX credits.holds_by_dist_tx;
DROP TABLE credits.dist_events CASCADE;
DROP TABLE credits.dist_participants CASCADE;
DROP TABLE credits.dist_transactions CASCADE;
RESET ROLE;
