-- Rule versions and the deployment audit trail are append-only. ENABLE ALWAYS
-- triggers fire even under session_replication_role = replica; only the owner
-- (or a superuser) could drop them, and the application role owns nothing.
-- The audit log attaches its hash chain to shadow.deployment_events by name.
SELECT ops._make_append_only('shadow.deployment_events', 'deployment_events_');
SELECT ops._make_append_only('shadow.rule_versions', 'rule_versions_');
