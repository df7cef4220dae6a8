-- depends: 0511_drop_verify_streams_v1
-- The expand step of a rehearsal release (deploy/tests/test_upgrade.py):
-- a nullable column without a default, a metadata-only change that needs a
-- brief ACCESS EXCLUSIVE lock and waits for it at most lock_timeout. The
-- running release never reads it; the new release's function does.
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '1min';
ALTER TABLE credits.accounts ADD COLUMN upgrade_note text;
