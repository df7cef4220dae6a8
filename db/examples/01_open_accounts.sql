-- Open a tenant and two accounts. Creating again with the same id/key is a
-- replay: same answer, nothing new.
SELECT tenant_id, name, replayed FROM credits.create_tenant('acme', 'Acme Corp');
SELECT tenant_id, name, replayed FROM credits.create_tenant('acme', 'Acme Corp');
SELECT account_id, name, status, replayed FROM credits.create_account('acme', 'scanner', 'open-scanner');
SELECT account_id, name, status, replayed FROM credits.create_account('acme', 'reports', 'open-reports');
SELECT account_id, name, status, replayed FROM credits.create_account('acme', 'scanner', 'open-scanner');
