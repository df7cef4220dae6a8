-- The journal is append-only. The triggers are ENABLE ALWAYS, so they fire
-- even under session_replication_role = replica; only the table owner (or a
-- superuser) could drop them, and the application role owns nothing.
SELECT ops._make_append_only('credits.entries', 'entries_');
