/**
 * The source sessions of a multi-master sync, opened for the key checks and plans of
 * sequences.ts (`ibex sequences`, `add sync … keys=`, `validate`).
 */
import type pg from 'pg';
import { connect, endQuietly, errorText } from '../db/connect.js';
import { IbexError } from '../errors.js';
import { loadSyncConfig } from '../control/sync-config.js';
import { findKeySequences, keyRisks, type KeyRisk, type KeySequence } from './sequences.js';

/** A table's name and key, as the key checks need them. */
export interface KeyedTable {
  schema: string;
  name: string;
  keys: readonly string[];
}

/** Open a session on every active PostgreSQL source of a sync (in name order), run `fn`, close them. */
export async function withSources<T>(control: pg.Client, sync: string, fn: (sessions: Map<string, pg.Client>, tables: KeyedTable[]) => Promise<T>): Promise<T> {
  const cfg = await loadSyncConfig(control, sync);
  const nodes = cfg.dbs.filter((d) => d.role === 'source' && d.dbtype === 'postgres' && d.status === 'active')
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const tables = cfg.relations.filter((r) => r.reltype === 'table').map((r) => ({ schema: r.schema, name: r.name, keys: r.keyColumns }));
  const sessions = new Map<string, pg.Client>();
  try {
    for (const d of nodes) {
      try {
        sessions.set(d.name, await connect(d.params, { applicationName: 'ibex/sequences', lockTimeoutMs: 5_000 }));
      } catch (err) {
        throw new IbexError('unreachable', `db ${d.name} is unreachable: ${errorText(err)}`, { cause: err });
      }
    }
    return await fn(sessions, tables);
  } finally {
    await Promise.all([...sessions.values()].map((c) => endQuietly(c)));
  }
}

/** Every source's key sequences of some tables. */
export async function keySequencesOf(sessions: ReadonlyMap<string, pg.Client>, tables: readonly KeyedTable[]): Promise<Map<string, KeySequence[]>> {
  const perNode = new Map<string, KeySequence[]>();
  for (const [node, c] of sessions) perNode.set(node, await findKeySequences(c, tables));
  return perNode;
}

/** The keys of a sync that two of its sources can hand out alike (none with fewer than two sources). */
export async function syncKeyRisks(control: pg.Client, sync: string): Promise<KeyRisk[]> {
  return withSources(control, sync, async (sessions, tables) => (sessions.size < 2 ? [] : keyRisks(sync, await keySequencesOf(sessions, tables))));
}
