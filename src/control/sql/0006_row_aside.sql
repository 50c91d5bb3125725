-- 0006: one bad row does not stop a sync. on_row_error: 'quarantine' sets a row a db refuses (a
-- CHECK, a trigger, a lock held past lock_timeout, a row too large) aside and the rest flows;
-- 'stall' fails the run naming the row. Set-aside rows are kept here until applied or dropped.
ALTER TABLE ibex.sync ADD COLUMN on_row_error text NOT NULL DEFAULT 'quarantine'
  CHECK (on_row_error IN ('stall', 'quarantine'));

CREATE TABLE ibex.row_aside (
  id          bigserial PRIMARY KEY,
  sync        text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  db          text NOT NULL,
  schemaname  text NOT NULL,
  relname     text NOT NULL,
  key         jsonb NOT NULL,
  -- 'upsert': the row failed to go in; 'delete': its delete failed.
  op          text NOT NULL CHECK (op IN ('upsert', 'delete')),
  -- The source the row came from: a retry re-queues the key there.
  source      text,
  row         jsonb,
  sqlstate    text,
  error       text NOT NULL,
  first_seen  timestamptz NOT NULL DEFAULT now(),
  last_seen   timestamptz NOT NULL DEFAULT now(),
  seen        integer NOT NULL DEFAULT 1,
  -- The run that last set it aside.
  run         bigint,
  -- Its key is pending again on its source (after a good run, or by "ibex quarantine retry");
  -- a good run after that which does not set it aside again applied it.
  requeued    boolean NOT NULL DEFAULT false,
  retried     timestamptz,
  UNIQUE (sync, db, schemaname, relname, key)
);

INSERT INTO ibex.config (name, value, about) VALUES
  ('row_lock_timeout_ms', '10000', 'how long an apply waits on one row''s lock before setting that row aside (on_row_error=quarantine)')
ON CONFLICT (name) DO NOTHING;
