-- Runs outside a transaction too (the migration is non-transactional).
DROP INDEX CONCURRENTLY IF EXISTS credits.accounts_upgrade_note;
