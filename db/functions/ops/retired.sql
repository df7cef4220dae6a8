-- Functions that no longer exist in db/functions, dropped from databases
-- migrated before they went. (Until every trigger is repointed this file
-- fails and the loader retries it after the others.)
DROP FUNCTION IF EXISTS credits._refuse_change();   -- now ops._refuse_change()
DROP FUNCTION IF EXISTS audit._refuse_change();
DROP FUNCTION IF EXISTS shadow._refuse_change();
DROP FUNCTION IF EXISTS credits._audit_chain(bigint);  -- holds chain per account now
DROP FUNCTION IF EXISTS ops._allow_removal(boolean);  -- a session setting opened append-only tables; now signed removal rules
