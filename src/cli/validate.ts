/**
 * `ibex validate <sync|all> [table=schema.table] [wait=SECONDS] [--repair [--from=<db>]] [--json]`:
 * compare every table of a sync across its databases (hash buckets, narrowed
 * only where they differ), list the keys that differ, and optionally copy the
 * rows of one db over the others. Exit 0 identical, 6 differences, 1 could
 * not complete, 2 bad arguments or an unknown sync.
 */
import { ExitCode, notFound, usage } from '../errors.js';
import { listSyncs } from '../control/config-store.js';
import { Validator } from '../validate/validate.js';
import { findKeySequences, keyRisks, type KeyRisk, type KeySequence } from '../keys/sequences.js';
import { repair, type RepairReport } from '../validate/repair.js';
import { defaultRepairSource, differingColumns, sequenceDiffers, type SyncReport, type TableReport } from '../validate/compare.js';
import { allowOnly, parseArgs, parseInterval } from './args.js';
import { likeOf, parseRelationTerm } from '../config/names.js';
import { progressReporter, stderrSink } from './progress.js';
import { didYouMean } from './suggest.js';
import type { Context } from './context.js';

const SYNTAX = 'ibex validate <sync|all> [table=schema.table] [wait=SECONDS] [--repair [--from=<db>]] [--json]';

/** The arguments of `ibex validate`. */
interface ValidateArgs {
  target: string;
  table: string | undefined;
  waitMs: number;
  repair: boolean;
  from: string | undefined;
}

/** Parse `--repair`, `--from=db` / `--from db`, `--table=…`, `--wait=…` and Bucardo-style words and options. */
export function parseValidateArgs(args: readonly string[]): ValidateArgs {
  const plain: string[] = [];
  const flagged = new Map<string, string>();
  let repairFlag = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--(from|table|wait)(?:=(.*))?$/.exec(a);
    if (a === '--repair') repairFlag = true;
    else if (m) {
      const value = m[2] ?? args[++i];
      if (value === undefined || value === '') throw usage(`--${m[1]} needs a value: ${SYNTAX}`);
      if (flagged.has(m[1]!)) throw usage(`option "${m[1]}" is given twice: give it once`);
      flagged.set(m[1]!, value);
    } else if (a.startsWith('-')) throw usage(`unknown flag "${a}" for "ibex validate": ${SYNTAX}${didYouMean(a.replace(/=.*$/, ''), ['--repair', '--from', '--table', '--wait'])}`);
    else plain.push(a);
  }
  const { words, options } = parseArgs(plain);
  allowOnly(options, ['table', 'from', 'wait'], '"ibex validate"');
  for (const [k, v] of flagged) {
    if (options.has(k)) throw usage(`option "${k}" is given twice: give it once`);
    options.set(k, v);
  }
  if (words.length !== 1) throw usage(`name one sync, or "all": ${SYNTAX}`);
  const from = options.get('from');
  if (from !== undefined && !repairFlag) throw usage('--from names the db a repair copies from: add --repair, or leave --from out');
  if (from === '') throw usage('--from needs a db name');
  const wait = options.get('wait');
  const waitMs = wait === undefined || wait === '0' ? 0 : Math.round(Number(parseInterval('wait', wait).split(' ')[0]) * 1000);
  return { target: words[0]!, table: options.get('table') || undefined, waitMs, repair: repairFlag, from };
}

/** `ibex validate` */
export async function validate(ctx: Context, args: string[]): Promise<number> {
  const a = parseValidateArgs(args);
  const term = a.table === undefined ? undefined : parseRelationTerm(a.table);
  const only = term ? relationMatcher(term.schema, term.name) : undefined;
  const progress = progressReporter(stderrSink(), { quiet: ctx.flags.quiet });
  return ctx.withControl(async (control) => {
    const all = await listSyncs(control);
    let names: string[];
    if (a.target === 'all') {
      names = all.map((s) => s.name).sort();
      if (names.length === 0) {
        if (ctx.flags.json) ctx.json({ equal: true, differences: 0, inFlight: 0, syncs: [], repairs: [] });
        else ctx.say('no syncs: add one with "ibex add sync"');
        return ExitCode.ok;
      }
    } else {
      if (!all.some((s) => s.name === a.target)) throw notFound('sync', a.target, 'list them with "ibex list syncs", or validate every sync with "ibex validate all"');
      names = [a.target];
    }
    const reports: SyncReport[] = [];
    const repairs: RepairReport[] = [];
    const risks: KeyRisk[] = [];
    let matched = 0;
    try {
      for (const name of names) {
        const v = new Validator(control, name, { ...(only ? { only } : {}), waitMs: a.waitMs, progress: progress.show });
        try {
          await v.load();
          const cfg = v.config();
          if (only && !cfg.relations.some((r) => only(r.schema, r.name))) continue;
          matched++;
          if (a.repair && a.from !== undefined && !cfg.dbs.some((d) => d.name === a.from)) {
            throw usage(`db "${a.from}" is not in sync "${name}" (its dbs: ${cfg.dbs.map((d) => d.name).join(', ')}): name one of them with --from=`);
          }
          let report = await v.compare();
          risks.push(...await keyRisksOf(v));
          if (a.repair && !report.equal) {
            const from = a.from ?? defaultRepairSource(v.compared())!;
            const done = await repair(v, control, v.differences(), { from, dryRun: ctx.flags.dryRun, progress: progress.show });
            repairs.push(done);
            if (!ctx.flags.dryRun) report = await v.verify(v.differences(), new Map(done.tables.map((t) => [t.table, t.netRows])));
          }
          reports.push(report);
        } finally {
          await v.close();
        }
      }
    } finally {
      progress.clear();
    }
    if (term && matched === 0) {
      throw usage(`no table or sequence ${a.table} in ${a.target === 'all' ? 'any sync' : `sync "${a.target}"`}: see "ibex list syncs" and "ibex list relgroups"`);
    }
    const differences = reports.reduce((n, r) => n + r.differences, 0);
    const inFlight = reports.reduce((n, r) => n + r.inFlight, 0);
    if (ctx.flags.json) ctx.json({ equal: differences === 0, differences, inFlight, syncs: reports, repairs, keyRisks: risks });
    else {
      for (const r of risks) ctx.say(`warning: ${r.message}`, true);
      for (const r of reports) {
        const rep = repairs.find((x) => x.sync === r.sync);
        if (rep) printRepair(ctx, rep);
        printReport(ctx, r, a.repair);
      }
    }
    return differences === 0 ? ExitCode.ok : ExitCode.differences;
  });
}

/** A matcher for `table=` (exact, or a LIKE pattern as elsewhere on the command line). */
function relationMatcher(schema: { text: string; pattern: boolean }, name: { text: string; pattern: boolean }): (s: string, n: string) => boolean {
  const re = (part: { text: string; pattern: boolean }): RegExp => {
    const like = likeOf(part);
    let src = '';
    for (let i = 0; i < like.length; i++) {
      const ch = like[i]!;
      if (ch === '\\' && i + 1 < like.length) src += like[++i]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      else if (ch === '%') src += '.*';
      else if (ch === '_') src += '.';
      else src += ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${src}$`, 's');
  };
  const rs = re(schema);
  const rn = re(name);
  return (s, n) => rs.test(s) && rn.test(n);
}

const keyText = (key: Record<string, string | null>): string =>
  Object.entries(key).map(([k, v]) => `${k}=${v === null ? 'NULL' : JSON.stringify(v)}`).join(', ');

function printTable(ctx: Context, t: TableReport): void {
  const rows = Object.entries(t.rows).map(([db, n]) => `${db} ${n}`).join(', ');
  if (t.status === 'schema') {
    ctx.say(`  ${t.table}: SCHEMA DIFFERS, rows not compared`, true);
    for (const s of t.schema ?? []) ctx.say(`    ${s.db}: ${s.problem}`, true);
    return;
  }
  const inflight = t.inFlight ? `; ${t.inFlight} key(s) in flight` : '';
  if (t.status === 'equal') {
    ctx.say(`  ${t.table}: equal (rows: ${rows}; ${t.ms} ms)${inflight}`, true);
  } else {
    ctx.say(`  ${t.table}: ${t.differences}${t.truncated ? '+' : ''} differing key(s) (rows: ${rows})${inflight}`, true);
    for (const k of t.keys) {
      const cols = differingColumns(k.versions);
      const partial = k.versions.every((v) => v.row !== null) && cols.length > 0;
      ctx.say(`    key ${keyText(k.key)}${partial ? ` — differs in ${cols.join(', ')}` : ''}`, true);
      for (const v of k.versions) {
        if (v.row === null) ctx.say(`      ${v.db}: missing`, true);
        else if (partial) ctx.say(`      ${v.db}: ${cols.map((c) => `${c}=${v.row![c] === null ? 'NULL' : JSON.stringify(v.row![c])}`).join(', ')}`, true);
        else ctx.say(`      ${v.db}: ${JSON.stringify(v.row)}`, true);
      }
    }
    if (t.differences > t.keys.length) ctx.say(`    … and ${t.differences - t.keys.length} more`, true);
  }
  for (const k of t.inFlightKeys) ctx.say(`    in flight: key ${keyText(k.key)} (pending on ${k.pendingOn.join(', ')})`, true);
  if (t.inFlight > t.inFlightKeys.length) ctx.say(`    … and ${t.inFlight - t.inFlightKeys.length} more in flight`, true);
}

function printReport(ctx: Context, r: SyncReport, repaired: boolean): void {
  const head = r.equal
    ? `sync ${r.sync}: equal on ${r.dbs.join(', ')}`
    : `sync ${r.sync}: ${r.differences} difference(s) on ${r.dbs.join(', ')}`;
  ctx.say(`${head}${r.inFlight ? `, ${r.inFlight} key(s) in flight (not yet replicated: not a difference)` : ''} (${r.ms} ms)`, true);
  if (r.dbs.length < 2) ctx.say('  fewer than two dbs to compare', true);
  for (const s of r.skipped) ctx.say(`  not compared: ${s.db} (${s.reason})`, true);
  for (const t of r.tables) printTable(ctx, t);
  for (const s of r.sequences) {
    const values = Object.entries(s.values).map(([db, v]) => `${db} ${v ?? 'missing'}`).join(', ');
    const what = sequenceDiffers(s) ? 'MISSING on a db' : s.status === 'behind' ? `${s.behind.join(', ')} behind (raised at the sync's next run)` : 'equal';
    ctx.say(`  sequence ${s.sequence}: ${what} (${values})`, true);
  }
  if (!r.equal && !repaired) {
    ctx.say(`  to copy one db's rows over the others: ibex validate ${r.sync} --repair --from=<db>`);
  }
}

function printRepair(ctx: Context, rep: RepairReport): void {
  const verb = rep.dryRun ? 'would repair' : 'repaired';
  ctx.say(`sync ${rep.sync}: ${verb} ${rep.changedKeys} key(s) from ${rep.from} on ${rep.targets.join(', ')}`, true);
  for (const t of rep.tables) {
    const per = Object.entries(t.changed).map(([db, n]) => `${db} ${n}`).join(', ');
    ctx.say(`  ${t.table}: ${t.keys} differing key(s)${per ? `; changed: ${per}` : ''}${t.inFlight ? `; ${t.inFlight} left to the sync (in flight)` : ''}`, true);
    for (const r of t.refused) ctx.say(`    refused on ${r.db}: key ${keyText(r.key)}: ${r.reason}`, true);
  }
  if (rep.dryRun) ctx.say('dry run: nothing was changed');
  else if (rep.changedKeys) ctx.say(`  every overwritten version is in the conflict log: ibex conflicts ${rep.sync}`);
}

/** Keys of a multi-master sync that two sources can hand out alike (a warning, not a difference). */
async function keyRisksOf(v: Validator): Promise<KeyRisk[]> {
  const sources = v.compared().filter((d) => d.role === 'source');
  if (sources.length < 2) return [];
  const tables = v.config().relations.filter((r) => r.reltype === 'table').map((r) => ({ schema: r.schema, name: r.name, keys: r.keyColumns }));
  const perNode = new Map<string, KeySequence[]>();
  for (const d of sources) perNode.set(d.name, await findKeySequences(await v.session(d), tables));
  return keyRisks(v.sync, perNode);
}
