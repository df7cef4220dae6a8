-- depends: 0721_idem_keys_backfill
-- The same CHECKs on the hot tables, in forms PostgreSQL reads faster.
-- PostgreSQL does not keep a table's CHECK expressions between statements:
-- every INSERT or UPDATE reads them back from their stored node trees, and a
-- list written as IN ('a', 'b', ...) is stored as one node per value. A
-- single consume writes credits.accounts and credits.entries once each, so
-- reading three long CHECKs was several percent of its time. The new forms
-- admit exactly the same values:
-- - accounts.status and entries.kind: = ANY of one text[] constant;
-- - accounts.name: its length within the range [1, 200].
-- Added NOT VALID here (a brief lock, no scan); 0731 validates them without
-- blocking writers, then drops the old ones and takes their names.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

SET ROLE shieldx_owner;

ALTER TABLE credits.accounts ADD CONSTRAINT accounts_status_check_compact
  CHECK (status = ANY('{open,frozen,closed}'::text[])) NOT VALID;
ALTER TABLE credits.accounts ADD CONSTRAINT accounts_name_check_compact
  CHECK (length(name) <@ '[1,200]'::int4range) NOT VALID;
ALTER TABLE credits.entries ADD CONSTRAINT entries_kind_check_compact
  CHECK (kind = ANY('{grant,consume,transfer_out,transfer_in,capture,dist_credit}'::text[])) NOT VALID;

RESET ROLE;
