\set id random(1, :naccounts)
\set r random(1, 999999999999)
SELECT entry_id FROM credits.consume('bench', :id, 1, 'b' || :client_id || '-' || :r);
