-- depends: 0511_drop_verify_streams_v1
-- The expand step of a rehearsal release (deploy/tests/test_upgrade.py):
-- a nullable column without a default, a metadata-only change that waits at
-- most the runner's lock_timeout for its brief ACCESS EXCLUSIVE lock. The
-- running release never reads it; the new release's function does.
SET LOCAL statement_timeout = '1min';
ALTER TABLE credits.accounts ADD COLUMN upgrade_note text;
