-- 0004: a db may name where its password is (env:NAME, file:/path, pgpass) instead of holding it
-- A configuration file never holds a password; the row keeps the reference and whoever connects
-- (the CLI, the daemon) resolves it at that moment, in its own environment.
ALTER TABLE ibex.db ADD COLUMN dbpass_ref text
  CHECK (dbpass_ref ~ '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+|pgpass)$');
ALTER TABLE ibex.db ADD CONSTRAINT db_one_password CHECK (dbpass IS NULL OR dbpass_ref IS NULL);
