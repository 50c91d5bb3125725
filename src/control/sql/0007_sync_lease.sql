-- 0007: several daemons on one control database. Each sync is run by the daemon holding its
-- lease; the epoch goes up each time the lease changes hands and is the fencing token every
-- apply transaction checks against the progress rows of its db, so a daemon that lost the
-- lease (frozen, cut off) can never commit a run.
CREATE TABLE ibex.sync_lease (
  sync      text PRIMARY KEY REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
  -- NULL: free (its owner stopped and gave it back).
  daemon    bigint REFERENCES ibex.daemon (id) ON DELETE SET NULL,
  epoch     bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  -- Renewed by the owner's heartbeat; past it, any daemon may take the lease.
  expires   timestamptz NOT NULL DEFAULT now(),
  acquired  timestamptz NOT NULL DEFAULT now()
);

-- Which syncs a daemon may run (ibex run --syncs=a,b*): NULL = all.
ALTER TABLE ibex.daemon ADD COLUMN syncs text[];

-- The lease time is the setting lease_seconds (absent: 30; see src/cli/settings.ts).
