SET ROLE shieldx_owner;
ALTER TABLE credits.entries DROP CONSTRAINT entries_kind_check_compact;
ALTER TABLE credits.accounts DROP CONSTRAINT accounts_name_check_compact;
ALTER TABLE credits.accounts DROP CONSTRAINT accounts_status_check_compact;
RESET ROLE;
