-- The functions taking its row type go with it (the older function files do not have them).
-- squawk-ignore-file ban-drop-function
DROP FUNCTION IF EXISTS audit._transition_hash(audit.key_transitions);
DROP FUNCTION IF EXISTS audit._transition_statement(audit.key_transitions);
DROP TABLE audit.key_transitions;
