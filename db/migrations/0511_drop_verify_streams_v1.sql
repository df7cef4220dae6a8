-- depends: 0510_function_files
-- The contract step of audit.verify_streams(boolean, boolean): the function
-- files define audit.verify_streams(boolean, boolean, text, text) with
-- defaults for the range, which a call with two arguments would find
-- ambiguous next to the old one. The function files used to drop it; they
-- never drop a public function any more (shieldx/schema.py), so the drop
-- lives here. A no-op where the old signature is gone already.
-- squawk-ignore-file ban-drop-function
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
DROP FUNCTION IF EXISTS audit.verify_streams(boolean, boolean);
