-- Back to payments without a card fingerprint.
SET LOCAL lock_timeout = '5s';
ALTER TABLE vault.payments DROP COLUMN card_hmac;
