/**
 * What `ibex kick <sync> <timeout>` shows while the kicked run copies whole
 * tables (onetimecopy, fullcopy): rows copied so far (the runner's
 * copy_progress rows in the control database) of an estimate (the source's
 * pg_class.reltuples, times the number of targets), the rate and the ETA.
 */
import type pg from 'pg';
import { connect, endQuietly } from '../db/connect.js';
import { qualified } from '../db/ident.js';
import { loadSyncConfig } from '../control/sync-config.js';
import { readCopyTotals } from '../control/run-store.js';
import { copyProgressText, type CopySample, type Progress } from './progress.js';

/** The planner's row estimate of a sync's tables on the db copies read from (null when unknown). */
export async function estimateSourceRows(control: pg.Client, sync: string): Promise<{ rows: number; targets: number } | null> {
  const cfg = await loadSyncConfig(control, sync);
  const from = cfg.dbs.find((d) => d.name === cfg.onetimecopyFrom) ?? cfg.dbs.find((d) => d.role === 'source');
  if (!from) return null;
  const names = cfg.relations.filter((r) => r.reltype === 'table').map((r) => qualified(r.schema, r.name).text);
  const c = await connect(from.params, { applicationName: 'ibex/kick', connectTimeoutS: 5 });
  try {
    const r = await c.query(`SELECT coalesce(sum(greatest(reltuples, 0)), 0)::text AS n FROM pg_catalog.pg_class WHERE oid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)`, [names]);
    const targets = cfg.dbs.filter((d) => d.name !== from.name && d.status === 'active').length;
    return { rows: Number(r.rows[0]?.n ?? 0), targets: Math.max(1, targets) };
  } finally {
    await endQuietly(c);
  }
}

/** Polls the control database and reports a running copy's progress; call `tick` in the kick's wait loop. */
export function copyProgressWatcher(control: pg.Client, sync: string, progress: Progress): { tick: () => Promise<void> } {
  const samples: CopySample[] = [];
  let estimate: { rows: number; targets: number } | null | undefined;
  return {
    async tick() {
      const t = await readCopyTotals(control, sync);
      if (!t) return;
      if (estimate === undefined) estimate = await estimateSourceRows(control, sync).catch(() => null);
      samples.push({ atMs: Date.now(), rows: t.rows });
      // The rate over the last 30 s: a rate since the start hides a copy slowing down.
      while (samples.length > 2 && samples[samples.length - 1]!.atMs - samples[0]!.atMs > 30_000) samples.shift();
      const total = estimate ? estimate.rows * Math.max(estimate.targets, t.targets) : null;
      progress.show(copyProgressText(`${sync} ${t.kind}`, samples, total, { done: t.done, total: t.begun }));
    },
  };
}
