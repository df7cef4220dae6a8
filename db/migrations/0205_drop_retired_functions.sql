-- depends: 0204_checkpoint_prunes 0400_shadow
-- Functions the function files no longer define. Each schema's append-only
-- trigger function became the one ops._refuse_change() (db/functions/ops/
-- append_only.sql); a hold's audit chain is per account, so
-- credits._audit_chain(bigint) has no caller; and the embedded Python modules
-- load through the one ops._py_load(text) (db/embed_python.py), which replaces
-- shadow._stats_load() and vault._py().
-- CASCADE: only a database whose function files predate ops._refuse_change()
-- still has triggers on the old trigger functions; those are the append-only
-- triggers, which the function files re-create on ops._refuse_change() in the
-- post-apply step of this same migrate (ops._make_append_only). The
-- application role has no write privilege on those tables in between.
-- A fresh database has none of these functions: every DROP is a no-op there.
-- Breaking callers is the point (squawk's ban-drop-function): none is left.
-- squawk-ignore-file ban-drop-function
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
DROP FUNCTION IF EXISTS credits._refuse_change() CASCADE;
DROP FUNCTION IF EXISTS audit._refuse_change() CASCADE;
DROP FUNCTION IF EXISTS shadow._refuse_change() CASCADE;
DROP FUNCTION IF EXISTS credits._audit_chain(bigint);
DROP FUNCTION IF EXISTS shadow._stats_load();
DROP FUNCTION IF EXISTS vault._py();
