SET ROLE shieldx_owner;
DROP TABLE credits.prepared_reaper_log;
ALTER TABLE credits.holds DROP CONSTRAINT holds_dist_tx_fk;
DROP INDEX credits.holds_by_dist_tx;
DROP TABLE credits.dist_events;
DROP TABLE credits.dist_participants;
DROP TABLE credits.dist_transactions;
RESET ROLE;
