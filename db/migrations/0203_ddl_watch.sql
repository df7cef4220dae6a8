-- depends: 0202_entries_archive
-- The DDL watch (db/functions/audit/ddl_watch.sql): the last logged state of
-- every watched object, a table with an audit or append-only trigger or a
-- function those triggers run, as a sorted list of facts ('trigger audit_log:
-- ENABLE ALWAYS', 'column seq bigint NOT NULL', ...). After each DDL command
-- the objects it touched are described again and the difference is written
-- to the audit log (chain 'ddl'). A cache of what the log says, like
-- audit.heads: verify() reports an object that differs from it.
SET ROLE shieldx_owner;
CREATE TABLE audit.ddl_watched (
  kind  text NOT NULL CHECK (kind IN ('table', 'function')),
  objid oid  NOT NULL,
  name  text NOT NULL,
  facts text[] NOT NULL,
  PRIMARY KEY (kind, objid)
);
RESET ROLE;
