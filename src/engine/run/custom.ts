/**
 * Custom code in a run: the hooks (before_sync … after_sync, exception) and conflict code
 * deciding the conflicts of a table.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { errorText, redact } from '../../db/connect.js';
import { sqlstate } from '../../db/sqlstate.js';
import type { SyncConfig, SyncDb } from '../../control/sync-config.js';
import { checkDecisions, type Decision } from '../../conflict/custom.js';
import { callCode, codesFor, CustomCodeError, type LoadedCode } from '../../customcode/loader.js';
import type { ExceptionResult, HookContext, HookResult, Row, RunCounts, Whenrun } from '../../customcode/api.js';
import type { TablePlan } from '../plan.js';
import type { RunResult } from '../types.js';
import { customWinsSql, mergedStageSql } from '../sql/resolve.js';
import { together } from '../together.js';
import type { CollectedConflict } from './conflicts.js';
import { setConflictKind } from './conflicts.js';

/** Hooks whose skipRun is honoured (they run before anything is committed). */
const SKIPPABLE: ReadonlySet<Whenrun> = new Set(['before_sync', 'before_txn', 'before_check_rows', 'before_commit']);

/** Conflicts per call of a conflict code. */
const BATCH = 500;

/** The counts of a run as custom code sees them. */
export function runCounts(r: RunResult): RunCounts {
  return { status: r.status, inserted: r.inserted, deleted: r.deleted, conflicts: r.conflicts, truncates: r.truncates, tables: structuredClone(r.tables), ...(r.error ? { error: r.error } : {}) };
}

/** The custom codes of one sync, called at their points of a run. */
export class Hooks {
  /** State custom code keeps between calls (HookContext.shared). */
  private readonly shared: Record<string, unknown> = {};

  constructor(
    private readonly sync: string,
    private readonly log: Logger,
    readonly codes: readonly LoadedCode[],
    private readonly cfg: () => SyncConfig,
    private readonly session: (d: SyncDb) => Promise<{ query(text: string, params?: unknown[]): Promise<pg.QueryResult> }>,
  ) {}

  /** Has the sync a code for this point? */
  has(whenrun: Whenrun): boolean {
    return this.codes.some((c) => c.whenrun === whenrun);
  }

  /** The context one call receives. */
  context(code: LoadedCode, runId: number): HookContext {
    const cfg = this.cfg();
    const noQuery = code.whenrun === 'before_sync' || code.whenrun === 'after_sync';
    return {
      sync: this.sync, runId, whenrun: code.whenrun, code: code.name,
      dbs: cfg.dbs.map((d) => ({ name: d.name, role: d.role })),
      query: noQuery ? undefined : async (db: string, text: string, params?: unknown[]): Promise<Row[]> => {
        const d = cfg.dbs.find((x) => x.name === db && x.dbtype === 'postgres');
        if (!d) throw new Error(`query(): "${db}" is not a PostgreSQL db of sync ${this.sync}`);
        return (await (await this.session(d)).query(text, params)).rows as Row[];
      },
      log: (message: string) => this.log.info({ sync: this.sync, run: runId, customcode: code.name }, message),
      shared: this.shared,
    };
  }

  /** Run the codes of a plain hook in order; returns the message of a skip one asked for (where allowed). */
  async run(whenrun: Whenrun, runId: number, extra: Record<string, unknown> = {}): Promise<string | undefined> {
    for (const code of this.codes.filter((c) => c.whenrun === whenrun)) {
      const out = await callCode<HookResult | undefined>(code, { ...this.context(code, runId), ...extra });
      if (out !== undefined && out !== null && (typeof out !== 'object' || Array.isArray(out))) {
        throw new CustomCodeError(code.name, whenrun, `returned ${JSON.stringify(out)?.slice(0, 100)}: return nothing or { skipRun?: boolean, message?: string }`);
      }
      if (out?.message) this.log.info({ sync: this.sync, run: runId, customcode: code.name }, String(out.message));
      if (out?.skipRun && SKIPPABLE.has(whenrun)) return `custom code "${code.name}" (whenrun=${whenrun}) skipped the run${out.message ? `: ${String(out.message)}` : ''}`;
    }
    return undefined;
  }

  /** Hooks after the commits cannot undo anything: a failure is logged and kept in the run's details. */
  async runAfter(whenrun: 'after_txn' | 'after_sync', result: RunResult, extra: Record<string, unknown>): Promise<void> {
    try {
      await this.run(whenrun, result.runId, { result: runCounts(result) });
    } catch (err) {
      const msg = redact(errorText(err));
      this.log.warn({ sync: this.sync, run: result.runId }, msg);
      extra.hookErrors = [...((extra.hookErrors as string[] | undefined) ?? []), msg];
    }
  }

  /** Ask the exception codes what to do about a failed run (everything is rolled back). */
  async onException(err: unknown, runId: number, attempt: number): Promise<'retry' | 'skip' | 'fail'> {
    let verdict: 'retry' | 'skip' | 'fail' = 'fail';
    for (const code of this.codes.filter((c) => c.whenrun === 'exception')) {
      const out = await callCode<ExceptionResult | undefined>(code, {
        ...this.context(code, runId), error: redact(errorText(err)), sqlstate: sqlstate(err) ?? sqlstate((err as { cause?: unknown }).cause), attempt,
      });
      if (out !== undefined && out !== null && (typeof out !== 'object' || Array.isArray(out))) {
        throw new CustomCodeError(code.name, 'exception', `returned ${JSON.stringify(out)?.slice(0, 100)}: return nothing or { retry?: boolean, skipRun?: boolean, message?: string }`);
      }
      if (out?.message) this.log.info({ sync: this.sync, run: runId, customcode: code.name }, String(out.message));
      if (out?.skipRun) return 'skip';
      if (out?.retry) verdict = 'retry';
    }
    return verdict;
  }

  /** The conflict codes of a table (mapped to it or to its sync). */
  conflictCodes(label: string): LoadedCode[] {
    return codesFor([...this.codes], 'conflict', label);
  }
}

/** Where resolveCustom writes: a session per db of the run. */
export interface CustomIo {
  hooks: Hooks;
  runId: number;
  columns: { name: string; type: string }[];
  session: (db: string) => { query(text: string, params?: unknown[]): Promise<pg.QueryResult> };
  sessions: readonly { query(text: string, params?: unknown[]): Promise<pg.QueryResult> }[];
}

/** Ask every conflict code of a table, in batches; the first code that decides a key wins it. */
async function decide(p: TablePlan, found: CollectedConflict[], io: CustomIo): Promise<({ code: string; d: Decision } | undefined)[]> {
  const decided: ({ code: string; d: Decision } | undefined)[] = found.map(() => undefined);
  for (const code of io.hooks.conflictCodes(p.label)) {
    for (let at = 0; at < found.length; at += BATCH) {
      const idx = [...found.keys()].slice(at, at + BATCH).filter((i) => decided[i] === undefined);
      if (idx.length === 0) continue;
      const batch = idx.map((i) => found[i]!.text!);
      const out = await callCode<unknown>(code, {
        ...io.hooks.context(code, io.runId), table: { schema: p.rel.schema, name: p.rel.name }, keyColumns: [...p.keys], columns: io.columns, conflicts: batch,
      });
      const checked = checkDecisions(code.name, batch, out, p.cols, p.keys);
      checked.forEach((d, j) => {
        if (d) decided[idx[j]!] = { code: code.name, d };
      });
    }
  }
  return decided;
}

/**
 * Let the conflict customcodes of a table decide its conflicts: undecided keys fall back to
 * "latest". A winning db gets the key into its ibex_mine (copied from there like any won row); a
 * merged row is staged on every db with origin "merge". Records are rewritten to say what was done.
 */
export async function resolveCustom(p: TablePlan, found: CollectedConflict[], io: CustomIo): Promise<void> {
  const decided = await decide(p, found, io);
  const wins = new Map<string, Row[]>();
  const merged: Row[] = [];
  found.forEach((rec, i) => {
    const t = rec.text!;
    const dec = decided[i];
    const winner = !dec ? t.latest : 'winner' in dec.d ? dec.d.winner : null;
    rec.strategy = dec ? `custom:${dec.code}` : 'latest';
    const versions = [...rec.losers, ...(rec.winner && rec.winner !== 'merge' ? [{ db: rec.winner, row: rec.winnerRow, changed_at: rec.winnerTime }] : [])];
    if (winner === null) {
      merged.push((dec!.d as { row: Row }).row);
      rec.winner = 'merge';
      rec.winnerRow = (dec!.d as { row: Row }).row;
      rec.winnerTime = null;
      rec.losers = versions;
    } else {
      const list = wins.get(winner) ?? [];
      list.push(t.key);
      wins.set(winner, list);
      const w = versions.find((v) => v.db === winner)!;
      rec.winner = winner;
      rec.winnerRow = w.row;
      rec.winnerTime = w.changed_at;
      rec.losers = versions.filter((v) => v.db !== winner);
    }
    setConflictKind(rec, rec.kind === 'insert_insert');
  });
  for (const [db, keyRows] of wins) await io.session(db).query(customWinsSql(p), [db, JSON.stringify(keyRows)]);
  if (merged.length) await together(io.sessions, (c) => c.query(mergedStageSql(p, io.columns), [JSON.stringify(merged)]));
}
