DROP TABLE audit.key_transitions;
