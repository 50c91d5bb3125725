-- 0001: the control schema: configuration (dbs, relations, groups, syncs, custom code),
-- engine state (cursors, copy progress, leases, kicks), run history and the conflict log.
-- Integrity lives here, not only in the CLI: names, roles, options and references are
-- all constrained, so a bad write from any client is refused by the database itself.

-- Names of dbs, groups, syncs and custom code: Bucardo's rule (they become NOTIFY payloads,
-- application_name parts and object-name parts), at most 63 bytes.
CREATE DOMAIN ibex.object_name AS text
  CHECK (VALUE ~ '^[A-Za-z][A-Za-z0-9_]*$' AND octet_length(VALUE) <= 63);

-- Global settings (Bucardo's bucardo_config); per-sync options live on ibex.sync.
CREATE TABLE ibex.config (
  name    text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
  value   text NOT NULL,
  about   text
);
INSERT INTO ibex.config (name, value, about) VALUES
  ('default_conflict_strategy', 'latest', 'strategy of a sync that names none'),
  ('conflict_log_retention', '30 days', 'conflict log entries older than this are purged'),
  ('run_history_retention', '30 days', 'run history older than this is purged'),
  ('lock_timeout_ms', '2000', 'lock_timeout of DDL steps (install, remove), retried with backoff'),
  ('statement_timeout_ms', '0', 'statement_timeout of replication sessions (0 = none)');

CREATE TABLE ibex.db (
  name            ibex.object_name PRIMARY KEY,
  dbtype          text NOT NULL DEFAULT 'postgres'
                  CHECK (dbtype IN ('postgres', 'mysql', 'mariadb', 'sqlite', 'redis', 'mongo', 'oracle')),
  host            text,
  port            integer CHECK (port BETWEEN 1 AND 65535),
  dbname          text,
  dbuser          text,
  -- Kept only when the user insists on pass=; .pgpass, service files and the environment are preferred.
  dbpass          text,
  conn            text,
  service         text,
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
  server_version  text,
  encoding        text,
  is_superuser    boolean,
  -- May this role SET session_replication_role = replica? (superuser, or PG15+ GRANT SET ON PARAMETER)
  can_replica     boolean,
  about           text,
  created         timestamptz NOT NULL DEFAULT now(),
  CHECK (dbname IS NOT NULL OR service IS NOT NULL OR dbtype IN ('redis'))
);

CREATE TABLE ibex.relation (
  id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  db                 text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE RESTRICT,
  schemaname         text NOT NULL CHECK (schemaname <> ''),
  relname            text NOT NULL CHECK (relname <> ''),
  reltype            text NOT NULL CHECK (reltype IN ('table', 'sequence')),
  -- The key found at `add table`: primary key, else the smallest usable unique index.
  key_columns        text[],
  key_types          text[],
  key_kind           text CHECK (key_kind IN ('primary', 'unique')),
  key_index          text,
  -- Overrides the sync's strategy for this table.
  conflict_strategy  text,
  created            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (db, schemaname, relname),
  CHECK (reltype = 'table' OR key_columns IS NULL),
  CHECK ((key_columns IS NULL) = (key_types IS NULL) AND (key_columns IS NULL) = (key_kind IS NULL)),
  CHECK (key_columns IS NULL OR (cardinality(key_columns) > 0 AND cardinality(key_columns) = cardinality(key_types)))
);

CREATE TABLE ibex.relgroup (
  name     ibex.object_name PRIMARY KEY,
  about    text,
  created  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.relgroup_member (
  relgroup  text NOT NULL REFERENCES ibex.relgroup (name) ON UPDATE CASCADE ON DELETE CASCADE,
  relation  integer NOT NULL REFERENCES ibex.relation (id) ON DELETE RESTRICT,
  priority  integer NOT NULL DEFAULT 0,
  PRIMARY KEY (relgroup, relation)
);

-- All relations of a relgroup come from one db (Bucardo's rule: a relgroup names tables of its source).
CREATE FUNCTION ibex.relgroup_one_db() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT count(DISTINCT r.db) FROM ibex.relgroup_member m JOIN ibex.relation r ON r.id = m.relation
      WHERE m.relgroup = NEW.relgroup) > 1 THEN
    RAISE EXCEPTION 'relgroup "%" would hold relations of more than one db', NEW.relgroup
      USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER relgroup_one_db AFTER INSERT OR UPDATE ON ibex.relgroup_member
  DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION ibex.relgroup_one_db();

CREATE TABLE ibex.dbgroup (
  name     ibex.object_name PRIMARY KEY,
  about    text,
  created  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.dbgroup_member (
  dbgroup   text NOT NULL REFERENCES ibex.dbgroup (name) ON UPDATE CASCADE ON DELETE CASCADE,
  db        text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE RESTRICT,
  role      text NOT NULL DEFAULT 'target' CHECK (role IN ('source', 'target', 'fullcopy')),
  -- Higher wins ties between equally recent changes, then the db name.
  priority  integer NOT NULL DEFAULT 0,
  PRIMARY KEY (dbgroup, db)
);

CREATE TABLE ibex.sync (
  name               ibex.object_name PRIMARY KEY
                     CHECK (lower(name) NOT IN ('all', 'sync', 'pushdelta', 'fullcopy', 'swap')),
  relgroup           text NOT NULL REFERENCES ibex.relgroup (name) ON UPDATE CASCADE ON DELETE RESTRICT,
  dbgroup            text NOT NULL REFERENCES ibex.dbgroup (name) ON UPDATE CASCADE ON DELETE RESTRICT,
  -- installing: capture is being installed; the daemon ignores the sync until it is active.
  status             text NOT NULL DEFAULT 'installing'
                     CHECK (status IN ('installing', 'active', 'paused', 'inactive')),
  status_reason      text,
  -- latest | source | target | skip | random | abort | custom | an ordered list of dbs "B,A,C"
  conflict_strategy  text NOT NULL DEFAULT 'latest' CHECK (conflict_strategy <> ''),
  -- The clock of `latest`: the trigger's change time, or commit timestamps (track_commit_timestamp).
  clock              text NOT NULL DEFAULT 'change' CHECK (clock IN ('change', 'commit')),
  onetimecopy        smallint NOT NULL DEFAULT 0 CHECK (onetimecopy IN (0, 1, 2)),
  onetimecopy_from   text REFERENCES ibex.db (name) ON UPDATE CASCADE,
  autokick           boolean NOT NULL DEFAULT true,
  -- Periodic check even without a wake-up (NULL = the daemon's default, 60 s).
  checktime          interval CHECK (checktime IS NULL OR checktime > '0'::interval),
  -- Refresh fullcopy targets this often (NULL = on kick only).
  fullcopy_interval  interval CHECK (fullcopy_interval IS NULL OR fullcopy_interval > '0'::interval),
  stayalive          boolean NOT NULL DEFAULT true,
  kidsalive          boolean NOT NULL DEFAULT true,
  deletemethod       text NOT NULL DEFAULT 'delete' CHECK (deletemethod IN ('delete', 'truncate', 'truncate_cascade')),
  isolation_level    text NOT NULL DEFAULT 'repeatable read' CHECK (isolation_level IN ('repeatable read', 'serializable')),
  -- How rows are written on PostgreSQL targets: upsert everywhere, or replica mode (triggers and FK
  -- checks silenced, delete-then-COPY allowed). auto = replica where every target allows it.
  apply_mode         text NOT NULL DEFAULT 'upsert' CHECK (apply_mode IN ('upsert', 'replica')),
  rebuild_index      smallint NOT NULL DEFAULT 0 CHECK (rebuild_index IN (0, 1, 2)),
  analyze_after_copy boolean NOT NULL DEFAULT true,
  vacuum_after_copy  boolean NOT NULL DEFAULT false,
  strict_checking    boolean NOT NULL DEFAULT true,
  lifetime           interval,
  maxkicks           integer CHECK (maxkicks IS NULL OR maxkicks >= 0),
  about              text,
  created            timestamptz NOT NULL DEFAULT now(),
  updated            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.customcode (
  id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name      ibex.object_name NOT NULL UNIQUE,
  whenrun   text NOT NULL CHECK (whenrun IN ('before_sync', 'before_txn', 'before_check_rows', 'conflict',
                                             'exception', 'before_commit', 'after_txn', 'after_sync')),
  -- The module's source text (TypeScript or JavaScript), stored so every daemon runs the same code.
  src_code  text NOT NULL,
  src_path  text,
  language  text NOT NULL DEFAULT 'typescript' CHECK (language IN ('typescript', 'javascript')),
  status    text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
  priority  integer NOT NULL DEFAULT 0,
  about     text,
  created   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.customcode_map (
  code      integer NOT NULL REFERENCES ibex.customcode (id) ON DELETE CASCADE,
  sync      text REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  relation  integer REFERENCES ibex.relation (id) ON DELETE CASCADE,
  active    boolean NOT NULL DEFAULT true,
  priority  integer NOT NULL DEFAULT 0,
  CHECK ((sync IS NULL) <> (relation IS NULL)),
  UNIQUE NULLS NOT DISTINCT (code, sync, relation)
);

-- Engine state -----------------------------------------------------------------------------

-- How far each sync has consumed each source: the snapshot of the last run that committed
-- everywhere. A change is consumed by a run iff its transaction is visible in the run's
-- snapshot and not in this one (PgQ's batch rule): open transactions are never skipped.
CREATE TABLE ibex.cursor (
  sync      text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  db        text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
  snapshot  text NOT NULL,
  updated   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sync, db)
);

-- Resumable copies (onetimecopy, fullcopy): the last key copied per table and target.
CREATE TABLE ibex.copy_progress (
  sync         text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  relation     integer NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
  db           text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
  last_key     text[],
  rows_copied  bigint NOT NULL DEFAULT 0,
  done         boolean NOT NULL DEFAULT false,
  started      timestamptz NOT NULL DEFAULT now(),
  updated      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sync, relation, db)
);

-- Live state of each sync, written by the daemon that holds its lease.
CREATE TABLE ibex.sync_state (
  sync           text PRIMARY KEY REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  state          text NOT NULL DEFAULT 'idle' CHECK (state IN ('idle', 'running', 'stalled', 'paused', 'copying')),
  since          timestamptz NOT NULL DEFAULT now(),
  last_error     text,
  last_error_at  timestamptz,
  attempts       integer NOT NULL DEFAULT 0,
  clock_skew_ms  double precision,
  backlog        jsonb,
  updated        timestamptz NOT NULL DEFAULT now()
);

-- Daemons (one today; the lease model already makes several safe).
CREATE TABLE ibex.daemon (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  pid        integer NOT NULL,
  host       text NOT NULL,
  version    text NOT NULL,
  started    timestamptz NOT NULL DEFAULT now(),
  heartbeat  timestamptz NOT NULL DEFAULT now(),
  stopped    timestamptz
);

-- `ibex kick`: a request the daemon answers by running the sync and naming the run.
CREATE TABLE ibex.kick (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sync       text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  requested  timestamptz NOT NULL DEFAULT now(),
  taken      timestamptz,
  run        bigint
);

CREATE TABLE ibex.run (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sync       text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  kind       text NOT NULL CHECK (kind IN ('delta', 'onetimecopy', 'fullcopy')),
  started    timestamptz NOT NULL,
  ended      timestamptz,
  status     text NOT NULL CHECK (status IN ('running', 'good', 'empty', 'failed', 'aborted')),
  inserted   bigint NOT NULL DEFAULT 0,
  deleted    bigint NOT NULL DEFAULT 0,
  conflicts  bigint NOT NULL DEFAULT 0,
  truncates  bigint NOT NULL DEFAULT 0,
  -- Per table: {"schema.table": {"inserted": n, "deleted": n, "conflicts": n}}; per source: snapshots.
  details    jsonb NOT NULL DEFAULT '{}',
  error      text
);
CREATE INDEX run_sync_started ON ibex.run (sync, started DESC);

-- Every resolved conflict: logged 'pending' before the targets commit, marked 'applied' after,
-- so a crash never leaves an overwrite untraced nor a logged overwrite that did not happen.
CREATE TABLE ibex.conflict (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sync        text NOT NULL,
  run         bigint,
  schemaname  text NOT NULL,
  relname     text NOT NULL,
  -- Key column name -> value (text, as PostgreSQL prints it).
  key         jsonb NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('update_update', 'update_delete', 'delete_update', 'delete_delete',
                                             'insert_insert', 'unique', 'foreign_key')),
  strategy    text NOT NULL,
  winner      text,
  -- The row written everywhere (NULL: the winner deleted it).
  winner_row  jsonb,
  winner_time timestamptz,
  -- [{db, row (NULL = deleted), changed_at}] for every losing db: what was overwritten.
  losers      jsonb NOT NULL DEFAULT '[]',
  status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'skipped', 'aborted', 'quarantined')),
  created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conflict_sync_created ON ibex.conflict (sync, created DESC);
