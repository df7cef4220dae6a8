-- Nothing to undo here: 0720's rollback drops the table.
SELECT 1;
