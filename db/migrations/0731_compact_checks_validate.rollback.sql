-- Back to 0730's state: the old forms under their names (validated: they admit
-- what the compact ones did), the compact ones under theirs.
SET ROLE shieldx_owner;
ALTER TABLE credits.entries RENAME CONSTRAINT entries_kind_check TO entries_kind_check_compact;
ALTER TABLE credits.accounts RENAME CONSTRAINT accounts_name_check TO accounts_name_check_compact;
ALTER TABLE credits.accounts RENAME CONSTRAINT accounts_status_check TO accounts_status_check_compact;
ALTER TABLE credits.entries ADD CONSTRAINT entries_kind_check
  CHECK (kind IN ('grant', 'consume', 'transfer_out', 'transfer_in', 'capture', 'dist_credit'));
ALTER TABLE credits.accounts ADD CONSTRAINT accounts_name_check CHECK (length(name) BETWEEN 1 AND 200);
ALTER TABLE credits.accounts ADD CONSTRAINT accounts_status_check CHECK (status IN ('open', 'frozen', 'closed'));
RESET ROLE;
