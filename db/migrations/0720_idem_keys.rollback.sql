-- squawk-ignore-file ban-drop-function
DROP TRIGGER idem_keys_register ON auth.keys;
DROP TRIGGER idem_keys_register ON credits.holds;
DROP TRIGGER idem_keys_register ON credits.accounts;
DROP FUNCTION credits._register_idem_keys();
DROP TABLE credits.idem_keys;
