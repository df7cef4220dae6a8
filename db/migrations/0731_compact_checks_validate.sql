-- depends: 0730_compact_checks
-- Validate 0730's CHECKs (a scan that lets writers go on), then drop the old
-- forms and give the new ones their names. Validation cannot fail: each new
-- CHECK admits exactly what the old one did.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '10min';

SET ROLE shieldx_owner;

ALTER TABLE credits.accounts VALIDATE CONSTRAINT accounts_status_check_compact;
ALTER TABLE credits.accounts VALIDATE CONSTRAINT accounts_name_check_compact;
ALTER TABLE credits.entries VALIDATE CONSTRAINT entries_kind_check_compact;

-- squawk-ignore ban-drop-constraint
ALTER TABLE credits.accounts DROP CONSTRAINT accounts_status_check;
-- squawk-ignore ban-drop-constraint
ALTER TABLE credits.accounts DROP CONSTRAINT accounts_name_check;
-- squawk-ignore ban-drop-constraint
ALTER TABLE credits.entries DROP CONSTRAINT entries_kind_check;
-- The names the old CHECKs had: nothing else refers to them.
-- squawk-ignore renaming-object
ALTER TABLE credits.accounts RENAME CONSTRAINT accounts_status_check_compact TO accounts_status_check;
-- squawk-ignore renaming-object
ALTER TABLE credits.accounts RENAME CONSTRAINT accounts_name_check_compact TO accounts_name_check;
-- squawk-ignore renaming-object
ALTER TABLE credits.entries RENAME CONSTRAINT entries_kind_check_compact TO entries_kind_check;

RESET ROLE;
