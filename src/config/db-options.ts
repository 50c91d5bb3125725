/**
 * The options of a db (`add db`, `update db`): name and meaning, written once
 * for the verbs, `ibex help add db`, completion and the docs check.
 */

/** Every db option, in the order help shows them. */
export const DB_OPTIONS: Readonly<Record<string, string>> = {
  dbname: 'the database name (required unless service= or dsn= gives it)',
  host: 'host name, IP address or socket directory (default: PGHOST, else /var/run/postgresql)',
  port: 'port, 1–65535 (default: PGPORT, else 5432)',
  user: 'login role (default: PGUSER, else the operating system user)',
  pass: 'password, stored and never printed; pass=- reads IBEX_PASSWORD or asks (prefer ~/.pgpass, a service file or PGPASSWORD)',
  conn: 'extra libpq options: "sslmode=verify-full sslrootcert=… connect_timeout=5"',
  service: 'a section of pg_service.conf',
  dsn: 'a postgresql://user@host:port/dbname?… URL instead of the options above',
  type: 'postgres (default), mariadb, mysql, sqlite, redis, mongo, oracle: other types are targets only',
  status: 'active (default) or inactive: runs leave an inactive db out',
  about: 'a free comment',
};

/** Bucardo's aliases of db option names. */
export const DB_ALIASES: Readonly<Record<string, string>> = {
  dbhost: 'host', dbport: 'port', dbuser: 'user', dbpass: 'pass', password: 'pass', dbconn: 'conn', dbservice: 'service',
  dbtype: 'type', dbdsn: 'dsn', db: 'dbname', database: 'dbname',
};
