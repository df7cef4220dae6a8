SET ROLE shieldx_owner;
DROP TABLE credits.holds;
-- Entries of the new kinds are immutable and stay; the old check only
-- applies to new rows.
ALTER TABLE credits.entries DROP CONSTRAINT entries_kind_check;
ALTER TABLE credits.entries ADD CONSTRAINT entries_kind_check
  CHECK (kind IN ('grant', 'consume', 'transfer_out', 'transfer_in')) NOT VALID;
RESET ROLE;
