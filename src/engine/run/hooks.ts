/**
 * The custom codes of one sync, called at their points of a run: the hooks (before_sync …
 * after_sync, exception) and the conflict codes a table's conflicts are offered to.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { errorText, redact } from '../../db/connect.js';
import { sqlstate } from '../../db/sqlstate.js';
import type { SyncConfig, SyncDb } from '../../control/sync-config.js';
import { callCode, codesFor, CustomCodeError, type LoadedCode } from '../../customcode/loader.js';
import type { ExceptionResult, HookContext, HookResult, Row, RunCounts, Whenrun } from '../../customcode/api.js';
import type { RunResult } from '../types.js';

/** Hooks whose skipRun is honoured (they run before anything is committed). */
const SKIPPABLE: ReadonlySet<Whenrun> = new Set(['before_sync', 'before_txn', 'before_check_rows', 'before_commit']);

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
