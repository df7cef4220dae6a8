\set a random(1, :naccounts)
\set b random(1, :naccounts - 1)
\set r random(1, 999999999999)
SELECT debit_entry_id FROM credits.transfer('bench', :a, CASE WHEN :b >= :a THEN :b + 1 ELSE :b END, 1, 't' || :client_id || '-' || :r);
