-- The release's function reads the column: it goes with it.
DROP FUNCTION IF EXISTS credits.get_account(text, bigint, boolean);
ALTER TABLE credits.accounts DROP COLUMN IF EXISTS upgrade_note;
