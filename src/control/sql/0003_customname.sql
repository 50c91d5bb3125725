-- 0003: customname (a table's name on one target db) and dbs reached by a connection string alone
-- Bucardo's customname: a target whose table has another name than the source's (a MySQL
-- table without the schema, a legacy name). One name per table and db; it goes with the table.
CREATE TABLE ibex.customname (
  relation  integer NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
  db        text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
  name      text NOT NULL CHECK (name <> '' AND length(name) <= 128 AND name !~ '[[:cntrl:]]'),
  created   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relation, db)
);

-- An Oracle or MongoDB target may be given whole as conn= (a connect string, a mongodb:// URL).
ALTER TABLE ibex.db DROP CONSTRAINT db_check;
ALTER TABLE ibex.db ADD CONSTRAINT db_check
  CHECK (dbname IS NOT NULL OR service IS NOT NULL OR conn IS NOT NULL OR dbtype IN ('redis'));
