-- depends: 0500_monitoring
-- A card top-up's replay fingerprint: a keyed hash (HMAC-SHA256 under the
-- row's payment key) of the full card number and expiry, bound to the row, so
-- a retry is compared on every digit without the number ever being stored in
-- clear or hashed without a key. NULL for payments made before it existed
-- (their replays are compared by decrypting; vault.reencrypt fills it in).
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';
ALTER TABLE vault.payments ADD COLUMN card_hmac bytea;
COMMENT ON COLUMN vault.payments.card_hmac IS
  'HMAC-SHA256 under the payment key key_id of the card number and expiry, bound to the row (vault._card_hmac): '
  'a replay''s fingerprint, never the number.';
