-- Closing key epochs and ratcheting a node's keyring are the operator's job
-- (pg_cron, the HA harness, Patroni's callbacks), not the application's.
REVOKE EXECUTE ON FUNCTION privacy.close_epoch(boolean), privacy.ratchet_local_keys() FROM shieldx_app;
