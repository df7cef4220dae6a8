-- Rule versions and the deployment audit trail are append-only. ENABLE ALWAYS
-- triggers fire even under session_replication_role = replica; only the owner
-- (or a superuser) could drop them, and the application role owns nothing.
-- The audit log attaches its hash chain to shadow.deployment_events by name.
CREATE OR REPLACE TRIGGER deployment_events_append_only
  BEFORE UPDATE OR DELETE ON shadow.deployment_events
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
CREATE OR REPLACE TRIGGER deployment_events_no_truncate
  BEFORE TRUNCATE ON shadow.deployment_events
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
ALTER TABLE shadow.deployment_events ENABLE ALWAYS TRIGGER deployment_events_append_only;
ALTER TABLE shadow.deployment_events ENABLE ALWAYS TRIGGER deployment_events_no_truncate;

CREATE OR REPLACE TRIGGER rule_versions_append_only
  BEFORE UPDATE OR DELETE ON shadow.rule_versions
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
CREATE OR REPLACE TRIGGER rule_versions_no_truncate
  BEFORE TRUNCATE ON shadow.rule_versions
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
ALTER TABLE shadow.rule_versions ENABLE ALWAYS TRIGGER rule_versions_append_only;
ALTER TABLE shadow.rule_versions ENABLE ALWAYS TRIGGER rule_versions_no_truncate;
