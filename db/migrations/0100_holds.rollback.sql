SET ROLE shieldx_owner;
-- CASCADE: functions taking the holds row type depend on it; the function
-- files bring them back on the next migrate.
DROP TABLE credits.holds CASCADE;
-- Entries of the new kinds are immutable and stay; the old check only
-- applies to new rows.
ALTER TABLE credits.entries DROP CONSTRAINT entries_kind_check;
ALTER TABLE credits.entries ADD CONSTRAINT entries_kind_check
  CHECK (kind IN ('grant', 'consume', 'transfer_out', 'transfer_in')) NOT VALID;
RESET ROLE;
