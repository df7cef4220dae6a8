-- Proof that every balance is its journal: no rows means every account adds up.
\i 02_move_credits.sql
SELECT * FROM credits.reconcile();
SELECT sum(balance) AS total_balance, (SELECT sum(e.amount) FROM credits.entries AS e) AS total_entries
  FROM credits.accounts;
