\set id random(1, :naccounts)
\set r random(1, 999999999999)
SELECT hold_id AS h FROM credits.reserve('bench', :id, 1, 'h' || :client_id || '-' || :r) \gset
SELECT entry_id FROM credits.commit_hold('bench', :h);
