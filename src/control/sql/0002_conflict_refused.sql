-- 0002: the conflict log records rows a target of another kind refused (kind 'refused')
ALTER TABLE ibex.conflict DROP CONSTRAINT conflict_kind_check;
ALTER TABLE ibex.conflict ADD CONSTRAINT conflict_kind_check
  CHECK (kind IN ('update_update', 'update_delete', 'delete_update', 'delete_delete', 'insert_insert', 'unique', 'foreign_key', 'refused'));
