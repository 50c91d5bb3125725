-- overhead: a random single-row UPDATE of bench_item.
\set id random(1, :nrows)
UPDATE bench_item SET amount = amount + 1, updated_at = now() WHERE id = :id;
