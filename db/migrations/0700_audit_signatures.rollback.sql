DROP TABLE privacy.epochs;
DROP TABLE audit.anchor_signatures;
DROP TABLE audit.checkpoint_signatures;
DROP TABLE audit.signing_keys;
