-- hotkeys: update one of the first :keys rows (shared by every node), and journal the transaction
-- in bench_pair (a = this node's origin marker, b = its own sequence): the journal row commits
-- with the hot-key update, and its commit time on every node gives the transaction's exact lag.
\set k random(1, :keys)
BEGIN;
UPDATE bench_item SET grp = :origin, payload = 'hot:' || :origin, amount = amount + 1, updated_at = clock_timestamp() WHERE id = :k;
INSERT INTO bench_pair (a, b, val) VALUES (:origin, nextval('bench_local.seq_hot'), 'hot:' || :k);
END;
