\set id random(1, :naccounts)
UPDATE bench_bare SET balance = balance - 1 WHERE id = :id AND balance >= 1;
