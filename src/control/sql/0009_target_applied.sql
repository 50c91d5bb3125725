-- 0009: the targets of other kinds each sync has written its progress to
-- A store that lost everything (a Redis restarted without persistence, a recreated database)
-- answers its progress with nothing, as a target never written does. This row tells them apart
-- even in a fresh process: a target with a row here and no progress of the sync lost what ibex
-- applied, and the engine refills it (docs/targets.md, "Lost data").
CREATE TABLE ibex.target_applied (
  sync   text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  db     text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
  since  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sync, db)
);
