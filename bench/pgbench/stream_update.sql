-- stream: one single-row UPDATE of a row no other writer touches (ids from this node's own sequence);
-- :origin (1000 + node index) marks the writing node.
WITH s AS (SELECT nextval('bench_local.seq_upd') AS id)
UPDATE bench_item b SET grp = :origin, payload = 'upd:' || :origin || ':' || s.id, amount = b.amount + 1, updated_at = clock_timestamp()
  FROM s WHERE b.id = s.id;
