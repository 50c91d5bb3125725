-- 0005: counter columns of a table (delta_columns=) and the per-column record of a merged conflict
-- Concurrent updates of these columns are applied as differences: they add up on every db.
ALTER TABLE ibex.relation ADD COLUMN delta_columns text[] CHECK (delta_columns IS NULL OR cardinality(delta_columns) > 0);
-- A merged row (conflict_strategy=merge, or delta columns): column -> the db it came from ('sum' for a counter).
ALTER TABLE ibex.conflict ADD COLUMN columns jsonb;
