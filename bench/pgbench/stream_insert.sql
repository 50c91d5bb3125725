-- stream: one single-row INSERT of a fresh id from this node's own sequence.
INSERT INTO bench_item (id, grp, payload, amount, updated_at)
VALUES (nextval('bench_local.seq_ins'), :origin, 'ins:' || :origin, 1.00, clock_timestamp());
