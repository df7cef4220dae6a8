-- The event triggers (made by db/functions/audit/ddl_watch.sql) write here: they go first.
DROP EVENT TRIGGER IF EXISTS audit_ddl_watch;  -- noqa: PRS
DROP EVENT TRIGGER IF EXISTS audit_ddl_watch_drop;
DROP TABLE audit.ddl_watched;
