-- Every refusal has its own SQLSTATE (see ops.error_codes()), and changes nothing.
\i 02_move_credits.sql
\set VERBOSITY verbose
\set SHOW_CONTEXT never
SELECT * FROM credits.consume('acme', 1, 1000000, 'too-much');
SELECT * FROM credits.consume('acme', 1, 26, 'scan-7f3a', 'malware scan');
SELECT * FROM credits.consume('acme', 1, 0, 'zero');
SELECT * FROM credits.consume('acme', 42, 1, 'nobody');
SELECT * FROM credits.consume('other', 1, 1, 'not-yours');
SELECT * FROM credits.transfer('acme', 1, 1, 5, 'loop');
\set VERBOSITY default
SELECT sqlstate, name, http_status FROM ops.error_codes() WHERE sqlstate < 'SX100';
