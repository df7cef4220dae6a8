-- transactional: false
DROP INDEX CONCURRENTLY IF EXISTS credits.accounts_upgrade_note;
