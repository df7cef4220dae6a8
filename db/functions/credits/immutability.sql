-- The journal is append-only. The triggers are ENABLE ALWAYS, so they fire
-- even under session_replication_role = replica; only the table owner (or a
-- superuser) could drop them, and the application role owns nothing. Entries
-- leave only through retention, behind a retention anchor the audit signer
-- signed (audit._removal_check, checked per statement).
SELECT ops._make_removable('credits.entries', 'audit._removal_check()', 'entries_');
