-- Nothing to restore: the dropped functions have no callers in any function
-- file, and re-creating them would bring back code the current schema does not
-- use. Rolling back only forgets that this migration ran; migrating again
-- drops nothing more.
SELECT 1;
