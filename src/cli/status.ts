/**
 * `ibex status`, `ibex kick`, `ibex pause`, `ibex resume`: what the syncs are
 * doing, and asking them to do something now.
 */
import { countAside } from '../control/aside-store.js';
import type { TableCounts } from '../model.js';
import type pg from 'pg';
import Table from 'cli-table3';
import * as store from '../control/daemon-store.js';
import { readSetting } from '../control/settings-store.js';
import { measureBacklog, type LiveSourceBacklog } from '../engine/backlog-live.js';
import { configError, ExitCode, IbexError, notFound, usage } from '../errors.js';
import { allowOnly, parseArgs, parseIntOption } from './args.js';
import type { Context, VerbHandler } from './context.js';
import { copyProgressWatcher } from './kick-progress.js';
import { progressReporter, stderrSink } from './progress.js';

/** How long before a kick's first answer we check that a daemon is still there. */
const KICK_POLL_MS = 200;
const DAEMON_CHECK_MS = 3000;
/** How often a kick waiting for a copy reads its progress. */
const COPY_CHECK_MS = 1000;

// ---- formatting ---------------------------------------------------------------------------

/** "3s", "5m 2s", "2h 3m", "4d 2h". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const ageS = (from: Date | null | undefined, now: Date): number | null => (from ? Math.max(0, (now.getTime() - from.getTime()) / 1000) : null);
const round1 = (n: number): number => Math.round(n * 10) / 10;

function table(head: string[]): Table.Table {
  // Colours only on a terminal (cli-table3 colours by default).
  return new Table({ head, style: process.stdout.isTTY ? {} : { head: [], border: [] } });
}


/** The per-table counts in ibex.run.details: under `tables`, or at the top level. */
export function tablesOf(details: Record<string, unknown>): Record<string, TableCounts> {
  const src = details.tables && typeof details.tables === 'object' ? (details.tables as Record<string, unknown>) : details;
  const out: Record<string, TableCounts> = {};
  for (const [name, v] of Object.entries(src)) {
    if (!v || typeof v !== 'object' || Array.isArray(v)) continue;
    const o = v as Record<string, unknown>;
    if (!['inserted', 'deleted', 'conflicts', 'truncates'].some((k) => typeof o[k] === 'number')) continue;
    out[name] = { inserted: Number(o.inserted ?? 0), deleted: Number(o.deleted ?? 0), conflicts: Number(o.conflicts ?? 0), truncates: Number(o.truncates ?? 0) };
  }
  return out;
}

// ---- ibex status --------------------------------------------------------------------------

/** The daemon part of `status --json`. */
export interface DaemonStatus {
  running: boolean;
  pid?: number;
  host?: string;
  version?: string;
  started?: string;
  heartbeat?: string;
  heartbeatAgeS?: number;
  stopped?: string | null;
}

/** One live daemon in `status --json` (`daemons`). */
export interface DaemonDoc {
  id: number;
  pid: number;
  host: string;
  version: string;
  started: string;
  heartbeat: string;
  heartbeatAgeS: number;
  /** Its --syncs patterns; null: every sync. */
  syncs: string[] | null;
  /** Runs another ibex version than the newest of the live daemons (finish the upgrade). */
  versionDiffers: boolean;
  /** The syncs it runs now. */
  owns: string[];
}

/** One sync in `status --json` (a stable shape: scripts read it). */
export interface SyncStatusDoc {
  name: string;
  status: string;
  statusReason: string | null;
  relgroup: string;
  dbgroup: string;
  autokick: boolean;
  /** idle | running | stalled | paused | copying; null before any daemon ran it. */
  state: string | null;
  stateSince: string | null;
  running: { run: number; kind: string; started: string; ageS: number } | null;
  lastGood: { run: number; ended: string; ageS: number } | null;
  lastRun: {
    run: number; kind: string; status: string; started: string; ended: string | null; ms: number | null;
    inserted: number; deleted: number; conflicts: number; truncates: number; tables: Record<string, TableCounts>; error: string | null;
    /** Per db, whose rights the rows were applied with (table owners, or ibex's role and why). */
    applyAs: Record<string, string>;
  } | null;
  /**
   * Per source, measured when status asked (live), else as the last good run left it: unconsumed
   * changes, the oldest one's time and age; `error` when the source could not be measured.
   */
  backlog: { db: string; keys: number | null; oldest: string | null; lagS: number | null; error?: string }[];
  /** Whether `backlog` was measured now on the sources (false: recorded by the last good run). */
  backlogLive: boolean;
  /** The age of the oldest change not yet replicated, over every source. */
  lagS: number | null;
  /** What an operator should know: a long transaction holding the delta window and purge back. */
  warnings: string[];
  clockSkewMs: number | null;
  lastError: { message: string; at: string | null; ageS: number | null } | null;
  attempts: number;
  /** Rows set aside (on_row_error=quarantine), see `ibex quarantine list`. */
  setAside: number;
  /** The daemon running this sync now (it holds the lease), or null. */
  owner: { daemon: number; pid: number; host: string; started: string } | null;
}

/** What `status` shows about the daemons: every live one, and the owner of each sync. */
export interface DaemonsView {
  live: store.DaemonRow[];
  owners: Awaited<ReturnType<typeof store.leaseOwners>>;
}

/** Compare two versions like 1.10.0 > 1.9.3 (numeric parts; others as text). */
function versionCompare(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const c = /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

function applyAsOf(details: Record<string, unknown> | null | undefined): Record<string, string> {
  const a = details?.applyAs;
  return a && typeof a === 'object' ? Object.fromEntries(Object.entries(a as Record<string, unknown>).map(([k, v]) => [k, String(v)])) : {};
}

/** Build the `status --json` document. */
export function statusDoc(rows: store.SyncStatusRow[], daemon: store.DaemonRow | undefined, alive: boolean,
  live: ReadonlyMap<string, LiveSourceBacklog[]> = new Map(),
  view: DaemonsView = { live: [], owners: new Map() }, aside: ReadonlyMap<string, number> = new Map()): { daemon: DaemonStatus; daemons: DaemonDoc[]; syncs: SyncStatusDoc[] } {
  const newest = view.live.map((x) => x.version).sort(versionCompare).at(-1);
  const daemons = view.live.map((x): DaemonDoc => ({
    id: x.id, pid: x.pid, host: x.host, version: x.version, started: x.started.toISOString(), heartbeat: x.heartbeat.toISOString(),
    heartbeatAgeS: round1(x.heartbeatAgeS), syncs: x.syncs, versionDiffers: newest !== undefined && x.version !== newest,
    owns: [...view.owners].filter(([, o]) => o.daemon === x.id).map(([s]) => s).sort(),
  }));
  const d: DaemonStatus = daemon
    ? {
      running: alive, pid: daemon.pid, host: daemon.host, version: daemon.version, started: daemon.started.toISOString(),
      heartbeat: daemon.heartbeat.toISOString(), heartbeatAgeS: round1(daemon.heartbeatAgeS), stopped: daemon.stopped?.toISOString() ?? null,
    }
    : { running: false };
  const syncs = rows.map((r): SyncStatusDoc => {
    const measured = live.get(r.name);
    const backlog: SyncStatusDoc['backlog'] = measured ? measured.map((b) => ({ db: b.db, keys: b.keys, oldest: b.oldest, lagS: b.lagS, ...(b.error ? { error: b.error } : {}) })) : Object.entries(r.backlog ?? {}).map(([db, b]) => {
      const keys = Number(b?.keys ?? 0);
      const oldest = typeof b?.oldest === 'string' && b.oldest ? b.oldest : null;
      const t = oldest ? Date.parse(oldest) : NaN;
      return { db, keys, oldest, lagS: keys > 0 && !Number.isNaN(t) ? round1(Math.max(0, (r.now.getTime() - t) / 1000)) : keys > 0 ? null : 0 };
    }).sort((a, b) => a.db.localeCompare(b.db));
    const lags = backlog.map((b) => b.lagS).filter((x): x is number => x !== null);
    const lr = r.lastRun;
    return {
      name: r.name, status: r.status, statusReason: r.statusReason, relgroup: r.relgroup, dbgroup: r.dbgroup, autokick: r.autokick,
      state: r.state, stateSince: r.stateSince?.toISOString() ?? null,
      running: r.running ? { run: r.running.id, kind: r.running.kind, started: r.running.started.toISOString(), ageS: round1(ageS(r.running.started, r.now)!) } : null,
      lastGood: r.lastGood ? { run: r.lastGood.id, ended: r.lastGood.ended.toISOString(), ageS: round1(ageS(r.lastGood.ended, r.now)!) } : null,
      lastRun: lr ? {
        run: lr.id, kind: lr.kind, status: lr.status, started: lr.started.toISOString(), ended: lr.ended?.toISOString() ?? null,
        ms: lr.ended ? lr.ended.getTime() - lr.started.getTime() : null,
        inserted: lr.inserted, deleted: lr.deleted, conflicts: lr.conflicts, truncates: lr.truncates, tables: tablesOf(lr.details), error: lr.error,
        applyAs: applyAsOf(lr.details),
      } : null,
      backlog,
      backlogLive: measured !== undefined,
      lagS: lags.length ? Math.max(...lags) : null,
      warnings: (measured ?? []).filter((b) => b.holder).map((b) => holderWarning(b.db, b.holder!)),
      clockSkewMs: r.clockSkewMs,
      lastError: r.lastError ? { message: r.lastError, at: r.lastErrorAt?.toISOString() ?? null, ageS: r.lastErrorAt ? round1(ageS(r.lastErrorAt, r.now)!) : null } : null,
      attempts: r.attempts,
      setAside: aside.get(r.name) ?? 0,
      owner: ((o) => (o ? { daemon: o.daemon, pid: o.pid, host: o.host, started: o.started.toISOString() } : null))(view.owners.get(r.name)),
    };
  });
  return { daemon: d, daemons, syncs };
}

/** The warning about a transaction holding a source's delta window and purge back. */
function holderWarning(db: string, h: NonNullable<LiveSourceBacklog['holder']>): string {
  return `db ${db}: transaction of pid ${h.pid}${h.application ? ` (${h.application})` : ''}, open ${formatAge(h.ageS)} (${h.state}), started before the sync's cursor: it holds the delta window and purge back — end it, or look at it with pg_stat_activity`;
}

/** Measure the live backlog of some syncs (each source at once; a failure is reported per source). */
async function liveBacklogs(c: pg.Client, names: string[]): Promise<Map<string, LiveSourceBacklog[]>> {
  const out = new Map<string, LiveSourceBacklog[]>();
  for (const n of names) {
    try {
      out.set(n, await measureBacklog(c, n));
    } catch {
      // A sync whose configuration cannot be loaded shows its recorded backlog (its error says why).
    }
  }
  return out;
}

/** `ibex status [sync] [--wide] [--watch] [--json]` */
export const status: VerbHandler = async (ctx, args) => {
  const rest = args.filter((a) => a !== '--wide' && a !== '--watch');
  const wide = args.includes('--wide');
  const watch = args.includes('--watch');
  const { words, options } = parseArgs(rest, { flags: [], what: '"ibex status"' });
  allowOnly(options, [], '"ibex status"');
  if (words.length > 1) throw usage('"ibex status" takes at most one sync: ibex status [sync] [--wide] [--watch] [--json]');
  if (watch && ctx.flags.json) throw usage('--watch and --json do not go together: poll "ibex status --json" instead');
  const name = words[0];
  const tty = ctx.tty ?? false;
  const layout = (): StatusLayout => ({ wide, width: 100, color: tty });
  const snapshot = async (c: pg.Client): Promise<{ daemon: DaemonStatus; daemons: DaemonDoc[]; syncs: SyncStatusDoc[] }> => {
    const rows = await store.readStatus(c, name);
    if (name !== undefined && rows.length === 0) throw notFound('sync', name, 'list them with "ibex list syncs"');
    const daemons = await store.liveDaemons(c, { leaseSeconds: await leaseSeconds(c) });
    const daemon = daemons[0] ?? (await store.lastDaemon(c));
    return statusDoc(rows, daemon, daemons.length > 0, await liveBacklogs(c, rows.filter((r) => r.status !== 'inactive').map((r) => r.name)),
      { live: daemons, owners: await store.leaseOwners(c) }, await countAside(c));
  };
  await ctx.withControl(async (c) => {
    if (!watch) {
      const doc = await snapshot(c);
      if (ctx.flags.json) ctx.json(doc);
      else printStatus(ctx, doc, name !== undefined, layout());
      return;
    }
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      await watchLoop({
        tty, write: (text) => ctx.say(text, true), signal: stop.signal, intervalMs: 2000,
        render: async () => {
          let out = '';
          printStatus({ ...ctx, say: (line) => void (out += line + '\n') }, await snapshot(c), name !== undefined, layout());
          return `ibex status — ${new Date().toISOString()} (every 2 s; Ctrl-C ends)\n${out}`;
        },
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
  return 0;
};

/** What `status --watch` needs: where to write, whether that is a terminal, and when to stop. */
export interface WatchOptions {
  tty: boolean;
  write: (text: string) => void;
  render: () => Promise<string>;
  signal: AbortSignal;
  intervalMs: number;
}

/**
 * Redraw until the signal: on a terminal the screen is cleared and the
 * snapshot drawn in place; elsewhere each snapshot is printed after the last.
 */
export async function watchLoop(o: WatchOptions): Promise<number> {
  let frames = 0;
  while (!o.signal.aborted) {
    const text = (await o.render()).replace(/\n$/, '');
    o.write(o.tty ? `\x1b[H\x1b[2J${text}` : `${frames ? '\n' : ''}${text}`);
    frames++;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, o.intervalMs);
      o.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
  return frames;
}

function daemonLine(d: DaemonStatus): string {
  if (d.running) {
    const up = d.started ? formatAge((Date.now() - Date.parse(d.started)) / 1000) : '?';
    return `daemon: running (pid ${d.pid} on ${d.host}, version ${d.version}, up ${up}, heartbeat ${formatAge(d.heartbeatAgeS ?? 0)} ago)`;
  }
  if (d.pid !== undefined) return `daemon: not running (last: pid ${d.pid} on ${d.host}, seen ${formatAge(d.heartbeatAgeS ?? 0)} ago) — start it with "ibex start"`;
  return 'daemon: not running — start it with "ibex start"';
}

const countsText = (r: { inserted: number; deleted: number; conflicts: number; truncates: number }): string =>
  `${r.inserted}/${r.deleted}/${r.conflicts}/${r.truncates}`;

function stateText(s: SyncStatusDoc): string {
  if (!s.state) return '-';
  const since = s.stateSince ? ` ${formatAge((Date.now() - Date.parse(s.stateSince)) / 1000)}` : '';
  return `${s.state}${since}${s.state === 'stalled' && s.attempts ? ` (${s.attempts} tries)` : ''}`;
}

/** The lease_seconds setting (liveness is judged by it). */
async function leaseSeconds(c: pg.Client): Promise<number> {
  const v = Number(await readSetting(c, 'lease_seconds'));
  return Number.isInteger(v) && v >= 2 ? v : store.LEASE_SECONDS_DEFAULT;
}

/** How `status` lays out its table. */
export interface StatusLayout {
  /** Every column, however wide (`--wide`). */
  wide: boolean;
  /** The width to fit without --wide (100: the table's fixed columns need about 100). */
  width: number;
  /** Colours (a terminal). */
  color: boolean;
}

/** A name longer than the column, split into lines of the column's width (a table would cut it). */
const breakLong = (text: string, n: number): string => text.match(new RegExp(`.{1,${n}}`, 'gsu'))?.join('\n') ?? text;

const cut = (text: string, n: number): string => (text.length > n ? text.slice(0, Math.max(1, n - 1)) + '…' : text);

/** The table of every sync: 100 columns (or the layout's width) unless wide. */
export function renderSyncTable(doc: { syncs: SyncStatusDoc[] }, layout: StatusLayout): string {
  const style = layout.color ? {} : { head: [], border: [] };
  const errText = (s: SyncStatusDoc, n: number): string =>
    s.lastError ? `${cut(s.lastError.message, n)}${s.lastError.ageS !== null ? ` (${formatAge(s.lastError.ageS)} ago)` : ''}` : '';
  const lastRun = (s: SyncStatusDoc): string => (s.lastRun ? `#${s.lastRun.run} ${s.lastRun.kind} ${s.lastRun.status}${s.lastRun.ms !== null ? ` ${s.lastRun.ms}ms` : ''}` : '-');
  const backlog = (s: SyncStatusDoc): string => (s.backlog.length ? `${s.backlog.reduce((n, b) => n + (b.keys ?? 0), 0)}${s.backlog.some((b) => b.error) ? '?' : ''}` : '-');
  const lag = (s: SyncStatusDoc): string => (s.lagS !== null ? formatAge(s.lagS) : '-');
  const good = (s: SyncStatusDoc): string => (s.lastGood ? `#${s.lastGood.run} ${formatAge(s.lastGood.ageS)} ago` : '-');
  if (layout.wide) {
    const t = new Table({ head: ['Sync', 'Status', 'State', 'Last good', 'Last run', 'I/D/C/T', 'Backlog', 'Lag', 'Skew', 'Last error'], style });
    for (const s of doc.syncs) {
      t.push([s.name, s.status, stateText(s), good(s), lastRun(s), s.lastRun ? countsText(s.lastRun) : '-', backlog(s), lag(s),
        s.clockSkewMs !== null ? `${Math.round(s.clockSkewMs)}ms` : '-', errText(s, 200)]);
    }
    return t.toString() + '\nI/D/C/T: inserted/deleted/conflicts/truncates of the last run that was not empty';
  }
  // Sync and Status as wide as their longest value (a name of more than 15 characters is broken
  // into lines), the middle columns fixed, and the error takes what is left of the width. A table
  // has one border per column plus one; cli-table3 pads each cell by one on either side.
  const syncW = Math.min(15, Math.max(4, ...doc.syncs.map((s) => s.name.length))) + 2;
  const statusW = Math.max(6, ...doc.syncs.map((s) => s.status.length)) + 2;
  const middle = [12, 11, 16, 14];
  const used = syncW + statusW + middle.reduce((a, b) => a + b, 0) + 8;
  const errW = Math.max(10, layout.width - used);
  const t = new Table({
    head: ['Sync', 'Status', 'State', 'Last good', 'Last run', 'Backlog, lag', 'Last error'], style,
    colWidths: [syncW, statusW, ...middle, errW], wordWrap: true,
  });
  for (const s of doc.syncs) {
    t.push([breakLong(s.name, syncW - 2), s.status, stateText(s), good(s), lastRun(s), `${backlog(s)} / ${lag(s)}`, s.lastError ? cut(s.lastError.message, 2 * (errW - 2) - 1) : '']);
  }
  return t.toString() + '\nmore: ibex status --wide (counts, clock skew, whole errors), ibex status <sync> (one in full)';
}

function printStatus(ctx: Context, doc: { daemon: DaemonStatus; daemons: DaemonDoc[]; syncs: SyncStatusDoc[] }, one: boolean, layout: StatusLayout): void {
  if (doc.daemons.length > 1) {
    ctx.say(`daemons: ${doc.daemons.length} running`, true);
    for (const x of doc.daemons) {
      ctx.say(`  #${x.id} pid ${x.pid} on ${x.host}, version ${x.version}${x.versionDiffers ? ' (DIFFERS: finish the upgrade)' : ''}, up ${formatAge((Date.now() - Date.parse(x.started)) / 1000)}, heartbeat ${formatAge(x.heartbeatAgeS)} ago${x.syncs ? `, syncs ${x.syncs.join(',')}` : ''}; runs ${x.owns.join(', ') || 'nothing'}`, true);
    }
  } else ctx.say(daemonLine(doc.daemon), true);
  if (doc.syncs.length === 0) {
    ctx.say('no syncs: add one with "ibex add sync"', true);
    return;
  }
  if (!one) {
    ctx.say(renderSyncTable(doc, layout), true);
    for (const s of doc.syncs) for (const w of [...s.warnings, ...s.backlog.filter((b) => b.error).map((b) => `db ${b.db}: backlog ${b.error}`)]) ctx.say(`warning: sync ${s.name}: ${w}`, true);
    const aside = doc.syncs.filter((x) => x.setAside > 0);
    if (aside.length) ctx.say(`rows set aside: ${aside.map((x) => `${x.name} ${x.setAside}`).join(', ')} (see "ibex quarantine list")`, true);
    return;
  }
  const s = doc.syncs[0]!;
  const kv = table(['Sync', s.name]);
  kv.push(['Status', s.status + (s.statusReason ? ` (${s.statusReason})` : '')]);
  kv.push(['State', stateText(s)]);
  kv.push(['Run by', s.owner ? `daemon #${s.owner.daemon} (pid ${s.owner.pid} on ${s.owner.host})` : '-']);
  kv.push(['Relgroup / dbgroup', `${s.relgroup} / ${s.dbgroup}`]);
  kv.push(['Autokick', s.autokick ? 'yes' : 'no (runs only when kicked)']);
  if (s.running) kv.push(['Running', `#${s.running.run} ${s.running.kind} for ${formatAge(s.running.ageS)}`]);
  kv.push(['Last good run', s.lastGood ? `#${s.lastGood.run} ended ${s.lastGood.ended} (${formatAge(s.lastGood.ageS)} ago)` : '-']);
  if (s.lastRun) {
    kv.push(['Last run', `#${s.lastRun.run} ${s.lastRun.kind} ${s.lastRun.status}, ended ${s.lastRun.ended ?? '-'}${s.lastRun.ms !== null ? ` in ${s.lastRun.ms} ms` : ''}`]);
    const applyAs = Object.entries(s.lastRun.applyAs);
    if (applyAs.length) kv.push(['Apply as', applyAs.map(([db, how]) => `${db}: ${how}`).join('; ')]);
    kv.push(['Last run counts', `${s.lastRun.inserted} inserted, ${s.lastRun.deleted} deleted, ${s.lastRun.conflicts} conflicts, ${s.lastRun.truncates} truncates`]);
  } else kv.push(['Last run', '-']);
  kv.push(['Backlog', s.backlog.length ? s.backlog.map((b) => b.error ? `${b.db}: ${b.error}` : `${b.db}: ${b.keys} changes${b.lagS !== null && (b.keys ?? 0) > 0 ? `, lag ${formatAge(b.lagS)}` : ''}`).join('; ') : '-']);
  kv.push(['Rows set aside', s.setAside ? `${s.setAside} (see "ibex quarantine list ${s.name}")` : '0']);
  kv.push(['Clock skew', s.clockSkewMs !== null ? `${Math.round(s.clockSkewMs)} ms` : '-']);
  kv.push(['Last error', s.lastError ? `${s.lastError.message}${s.lastError.ageS !== null ? ` (${formatAge(s.lastError.ageS)} ago)` : ''}` : '-']);
  ctx.say(kv.toString(), true);
  for (const w of s.warnings) ctx.say(`warning: ${w}`, true);
  const tables = Object.entries(s.lastRun?.tables ?? {});
  if (tables.length) {
    const t = table(['Table', 'Inserted', 'Deleted', 'Conflicts', 'Truncates']);
    for (const [name, c] of tables.sort(([a], [b]) => a.localeCompare(b))) t.push([name, c.inserted, c.deleted, c.conflicts, c.truncates]);
    ctx.say(t.toString(), true);
  }
}

// ---- ibex kick ----------------------------------------------------------------------------

/** `ibex kick <sync> [timeout]`: run a sync now; with a timeout in seconds (0 = forever), wait for that run. */
export const kick: VerbHandler = async (ctx, args) => {
  const { words, options } = parseArgs(args);
  allowOnly(options, [], '"ibex kick"');
  if (words.length === 0 || words.length > 2) throw usage('write: ibex kick <sync> [timeout in seconds, 0 = wait forever]');
  const sync = words[0]!;
  const timeoutS = words[1] === undefined ? undefined : parseIntOption('timeout', words[1]);
  return ctx.withControl(async (c) => {
    const st = await store.syncStatus(c, sync);
    if (!st) throw notFound('sync', sync, 'list them with "ibex list syncs"');
    if (st.status === 'paused') throw configError(`sync "${sync}" is paused${st.reason ? ` (${st.reason})` : ''}: resume it first with "ibex resume ${sync}"`);
    if (st.status !== 'active') throw configError(`sync "${sync}" is ${st.status}, not active: it cannot be kicked until it is active`);
    if ((await store.liveDaemons(c)).length === 0) throw new IbexError('daemon', 'no ibex daemon is running: start it with "ibex start"');
    const id = await store.insertKick(c, sync);
    if (timeoutS === undefined) {
      if (ctx.flags.json) ctx.json({ sync, kick: id });
      else ctx.say(`kicked sync "${sync}"`);
      return ExitCode.ok;
    }
    return waitForKick(ctx, c, sync, id, timeoutS);
  });
};

async function waitForKick(ctx: Context, c: pg.Client, sync: string, id: number, timeoutS: number): Promise<number> {
  const started = Date.now();
  const deadline = timeoutS === 0 ? Infinity : started + timeoutS * 1000;
  let lastDaemonCheck = started;
  let lastCopyCheck = started;
  const progress = progressReporter(stderrSink(), { quiet: ctx.flags.quiet || ctx.flags.json });
  const copy = copyProgressWatcher(c, sync, progress);
  try {
    for (;;) {
      const p = await store.kickProgress(c, id);
      if (!p) throw new IbexError('internal', `kick ${id} of sync "${sync}" disappeared (was the sync removed?)`);
      if (p.run) {
        progress.clear();
        return reportKick(ctx, sync, id, p.run);
      }
      const now = Date.now();
      if (p.taken && now - lastCopyCheck >= COPY_CHECK_MS) {
        lastCopyCheck = now;
        await copy.tick();
      }
      if (now > deadline) {
        throw new IbexError('kick_timeout', `the run kicked for sync "${sync}" did not end within ${timeoutS} s (kick ${id} ${p.taken ? 'is running' : 'is not taken yet'}): see "ibex status ${sync}"`);
      }
      if (now - lastDaemonCheck >= DAEMON_CHECK_MS) {
        lastDaemonCheck = now;
        if ((await store.liveDaemons(c)).length === 0) {
          throw new IbexError('daemon', `the ibex daemon stopped before the run kicked for sync "${sync}" ended: start it with "ibex start"; the kick stays queued`);
        }
        const st = await store.syncStatus(c, sync);
        if (st?.status === 'paused' && !p.taken) throw configError(`sync "${sync}" was paused before its kick ran${st.reason ? ` (${st.reason})` : ''}: the kick runs once it is resumed with "ibex resume ${sync}"`);
      }
      await new Promise((r) => setTimeout(r, KICK_POLL_MS));
    }
  } finally {
    progress.clear();
  }
}

function reportKick(ctx: Context, sync: string, kickId: number, run: store.RunRow): number {
  const ms = run.ended ? run.ended.getTime() - run.started.getTime() : 0;
  if (ctx.flags.json) {
    ctx.json({
      sync, kick: kickId, run: run.id, kind: run.kind, status: run.status, ms, inserted: run.inserted, deleted: run.deleted,
      conflicts: run.conflicts, truncates: run.truncates, tables: tablesOf(run.details), error: run.error,
    });
  } else {
    ctx.say(`sync "${sync}": run ${run.id} (${run.kind}) ${run.status} in ${ms} ms: ${run.inserted} inserted, ${run.deleted} deleted, ${run.conflicts} conflicts, ${run.truncates} truncates`);
  }
  if (run.status === 'good' || run.status === 'empty') return ExitCode.ok;
  if (run.status === 'aborted') throw new IbexError('conflict_abort', `sync "${sync}" stopped on a conflict (run ${run.id}): ${run.error ?? 'see "ibex conflicts"'}`);
  throw new IbexError('run_failed', `the run kicked for sync "${sync}" failed (run ${run.id}): ${run.error ?? 'see the daemon log'}`);
}

// ---- ibex pause / resume ------------------------------------------------------------------

/** `ibex pause <sync …> [reason=…]`: stop running these syncs (the run in progress ends first). */
export const pause: VerbHandler = async (ctx, args) => setStatus(ctx, args, 'paused');

/** `ibex resume <sync …>`: run these syncs again. */
export const resume: VerbHandler = async (ctx, args) => setStatus(ctx, args, 'active');

async function setStatus(ctx: Context, args: string[], to: 'paused' | 'active'): Promise<number> {
  const verb = to === 'paused' ? 'pause' : 'resume';
  const { words, options } = parseArgs(args);
  allowOnly(options, to === 'paused' ? ['reason'] : [], `"ibex ${verb}"`);
  if (words.length === 0) throw usage(`write: ibex ${verb} <sync …>`);
  const names = [...new Set(words)];
  return ctx.withControl(async (c) => {
    const statuses = await store.syncStatuses(c, names);
    const unknown = names.filter((n) => !statuses.has(n));
    if (unknown.length) throw notFound(unknown.length > 1 ? 'syncs' : 'sync', unknown.join('", "'), 'list them with "ibex list syncs"');
    for (const n of names) {
      const s = statuses.get(n)!;
      if (s !== 'active' && s !== 'paused') throw configError(`sync "${n}" is ${s}: only an active or paused sync can be ${to === 'paused' ? 'paused' : 'resumed'}`);
    }
    const reason = to === 'paused' ? (options.get('reason') || 'paused with "ibex pause"') : null;
    if (ctx.flags.dryRun) {
      for (const n of names) ctx.say(statuses.get(n) === to ? `sync "${n}" is already ${to}` : `would ${verb} sync "${n}"`);
      ctx.say('dry run: nothing was changed');
      return ExitCode.ok;
    }
    const changed = await store.setSyncsStatus(c, names, to, reason);
    const unchanged = names.filter((n) => !changed.includes(n));
    if (ctx.flags.json) ctx.json({ [to === 'paused' ? 'paused' : 'resumed']: changed, unchanged });
    else {
      for (const n of changed) ctx.say(`${to === 'paused' ? 'paused' : 'resumed'} sync "${n}"`);
      for (const n of unchanged) ctx.say(`sync "${n}" was already ${to === 'paused' ? 'paused' : 'active'}`);
    }
    return ExitCode.ok;
  });
}
