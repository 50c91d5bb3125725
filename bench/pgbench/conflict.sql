-- conflict: update the next key of the shared range (A ascending, B descending) and note, in a
-- local table that is never replicated, when this node wrote it.
BEGIN;
SELECT nextval('bench_local.seq_conf') AS k \gset
UPDATE bench_item SET grp = :origin, payload = 'conflict:' || :origin || ':' || id, amount = amount + 1, updated_at = clock_timestamp()
 WHERE id = :k;
INSERT INTO bench_local.wlog (id, ts) VALUES (:k, clock_timestamp());
END;
