-- Nothing to restore: no release of the function files defines the old signature.
SELECT 1;
