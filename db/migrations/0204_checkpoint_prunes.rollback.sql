-- The heads already pruned stay gone: exporting such a checkpoint then gives
-- no heads (and verify_export reports that they do not match its root).
DROP TABLE audit.checkpoint_prunes;
