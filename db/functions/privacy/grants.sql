-- Closing key epochs is the operator's job (pg_cron), not the application's.
REVOKE EXECUTE ON FUNCTION privacy.close_epoch(boolean) FROM shieldx_app;
