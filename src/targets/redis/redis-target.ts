/**
 * The Redis target: one HASH per row (layout in `redis-dialect.ts`), written in pipelined
 * MULTI chunks, with the progress record written last, after every data chunk is acknowledged.
 *
 * Redis has no rollback (a failing command inside EXEC leaves the others applied), so this target
 * is not transactional: a run that fails half-way leaves part of its rows written, and the next
 * run rewrites them, because every write is a keyed replace or delete of the current winner.
 *
 * Losing everything (a restart of a server that keeps nothing on disk, a FLUSHDB) is recognised
 * by `readProgress` with the rule documented on it, so the engine can refill the target.
 */
import { randomUUID } from 'node:crypto';
import type { Redis as RedisClient, ChainableCommander } from 'ioredis';
import { IbexError } from '../../errors.js';
import { isConnectionError } from '../../db/sqlstate.js';
import { connected, firstLine, targetFailure, withoutPassword } from '../failure.js';
import { canonicalText } from '../codec.js';
import type {
  KeyRow,
  Problem,
  ProgressEntry,
  TableSpec,
  Target,
  TargetCaps,
  TargetParams,
  TextRow,
  UpsertOutcome,
} from '../target.js';
import { epochOf, FENCE_SOURCE, fenceEntry, fencedMessage } from '../target.js';
import {
  MARKER_KEY,
  dbNumber,
  decodeProgress,
  encodeProgress,
  FENCED_PROGRESS_LUA,
  hashArgs,
  keyOfRow,
  parseRowKey,
  progressKey,
  reservedNameProblem,
  rowFromHash,
  rowKey,
  rowLayout,
  tablePattern,
  tablePrefix,
} from './redis-dialect.js';

/** Commands per MULTI chunk: large enough to amortise round trips, small enough to keep EXEC short. */
export const CHUNK_COMMANDS = 1000;
/** Chunks in flight at once on the one connection (pipelining without unbounded memory). */
const CHUNKS_IN_FLIGHT = 16;
/**
 * Rows per call of the replace script, and the arguments and characters of keys and values one
 * call carries at most (a call is cut when either passes). The argument bound matters for wide
 * tables: 1,000 rows of 80 columns are 161k arguments, one EVAL that keeps the server busy long
 * and an argument list the client must hold at once.
 */
export const REPLACE_ROWS = 1000;
export const REPLACE_ARGS = 50_000;
const REPLACE_BYTES = 8 << 20;

/**
 * Replace whole hashes: for each key, DEL it, then HSET its fields. ARGV holds, per key, the
 * number of field and value arguments, then those arguments. A script runs without any other
 * command in between, as MULTI does, so no reader sees a row half written; and it is one command
 * per batch instead of two per row, which is what the client spends its time on.
 */
const REPLACE_LUA = `local a = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('DEL', KEYS[k])
  redis.call('HSET', KEYS[k], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
return #KEYS`;

/** The client with the replace script defined (ioredis sends EVALSHA, and EVAL once when the server lacks it). */
type ScriptClient = RedisClient & { ibexReplaceHashes(numKeys: number, keys: string[], args: string[]): Promise<number> };
/** Keys asked for per SCAN step. */
const SCAN_COUNT = 1000;
/** Keys `check` samples per table. */
const CHECK_SAMPLE = 1000;

/**
 * What this process has seen on each server (host:port/db): the marker's value and the syncs
 * whose progress it read or wrote there. It outlives one Target (a Target is one run's session),
 * which is what lets a later run notice that the server lost what an earlier one saw.
 */
const seen = new Map<string, { marker: string | undefined; syncs: Set<string> }>();

/** Forget what this process saw (tests that reuse ports between servers). */
export function forgetSeenServers(): void {
  seen.clear();
}

/** Create a Redis target for these parameters (the registry's factory). */
export function createTarget(params: TargetParams): Target {
  return new RedisTarget(params);
}

/** See the module comment. */
export class RedisTarget implements Target {
  readonly kind = 'redis' as const;
  readonly name: string;
  readonly caps: TargetCaps = { transactional: false, progressInTxn: false, copyText: false };
  private readonly host: string;
  private readonly port: number;
  private readonly db: number;
  private readonly params: TargetParams;
  private client: RedisClient | undefined;

  constructor(params: TargetParams) {
    this.params = params;
    this.name = params.name;
    if (params.conn !== undefined && params.conn !== '') {
      throw new IbexError('usage', `db "${params.name}": conn= is not used for redis; give host=, port=, dbname=<db number> and pass=`);
    }
    const db = dbNumber(params.dbname);
    if (db === undefined) {
      throw new IbexError('usage', `db "${params.name}": dbname=${params.dbname} is not a Redis database number; give dbname=0 (or another number)`);
    }
    this.db = db;
    this.host = params.host || '127.0.0.1';
    this.port = params.port ?? 6379;
  }

  private get where(): string {
    return `${this.host}:${this.port}/${this.db}`;
  }

  /** An error's message with the password cut out, whatever produced it. */
  private clean(message: string): string {
    return withoutPassword(message, this.params);
  }

  /**
   * A failed command as one line naming the db. A connection that died under it (the server was
   * killed or restarted) is 'unreachable', so the run is retried with backoff as for a server that
   * was down at the start; ioredis words that in several ways ("Connection is closed.", "Stream
   * isn't writeable…" for the commands sent after it), so the client's state decides too.
   */
  private fail(what: string, err: unknown): IbexError {
    const status = this.client?.status;
    const gone = (status !== undefined && status !== 'ready') || isConnectionError(err) || /Stream isn't writeable/.test(firstLine(err));
    if (!gone) return targetFailure(this.params, what, err, this.where);
    return new IbexError('unreachable', this.clean(`redis target "${this.name}" (${this.where}): lost the connection while ${what}: ${firstLine(err)}`), { cause: err });
  }

  private get redis(): RedisClient {
    return connected(this.client, this.params);
  }

  async connect(): Promise<void> {
    const { Redis } = await import('ioredis');
    let lastError: Error | undefined;
    const client = new Redis({
      host: this.host,
      port: this.port,
      ...(this.params.user ? { username: this.params.user } : {}),
      ...(this.params.password ? { password: this.params.password } : {}),
      connectionName: 'ibex',
      lazyConnect: true,
      // One session per run: a dropped connection fails the run, which the engine retries.
      retryStrategy: () => null,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 10_000,
    });
    client.defineCommand('ibexReplaceHashes', { lua: REPLACE_LUA });
    // ioredis reports connection trouble as events; without a listener it prints them.
    client.on('error', (e: Error) => {
      lastError = e;
    });
    try {
      await client.connect();
      // SELECT here, not ioredis's db option: that SELECT's failure (a number past the server's
      // `databases`) is only an event, and the session would stay on db 0 and write there.
      await client.select(this.db);
    } catch (err) {
      client.disconnect();
      const e = (lastError ?? err) as Error & { code?: string };
      const why = e.code && !e.message.includes(e.code) ? `${e.code} ${e.message}` : e.message;
      throw new IbexError('unreachable', this.clean(`redis target "${this.name}": cannot connect to ${this.where}: ${why}`), { cause: err });
    }
    this.client = client;
  }

  async probe(): Promise<{ version: string }> {
    const info = await this.serverInfo();
    return { version: `Redis ${info.redis_version ?? 'unknown'}` };
  }

  private async serverInfo(): Promise<Record<string, string>> {
    let text: string;
    try {
      text = await this.redis.info('server');
    } catch (err) {
      throw this.fail('INFO server', err);
    }
    const out: Record<string, string> = {};
    for (const line of text.split(/\r?\n/)) {
      const i = line.indexOf(':');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
    return out;
  }

  /**
   * Redis has no tables to compare; what can go wrong is a key under a table's prefix that is
   * not ibex's: not a hash (an upsert would replace it) or not a key of that table's shape.
   * Samples the first keys SCAN returns, so it stays cheap on a large keyspace.
   */
  async check(tables: readonly TableSpec[]): Promise<Problem[]> {
    const problems: Problem[] = [];
    for (const table of tables) {
      const reserved = reservedNameProblem(table);
      if (reserved !== undefined) {
        problems.push({ table: table.label, message: reserved });
        continue;
      }
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await this.redis.scan(cursor, 'MATCH', tablePattern(table), 'COUNT', SCAN_COUNT);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0' && keys.length < CHECK_SAMPLE);
      const sample = keys.slice(0, CHECK_SAMPLE);
      if (sample.length === 0) continue;
      const pipe = this.redis.pipeline();
      for (const k of sample) pipe.type(k);
      const types = (await pipe.exec()) ?? [];
      const notHash = sample.filter((_, i) => types[i]?.[1] !== 'hash');
      const badShape = sample.filter((k) => parseRowKey(table, k) === undefined);
      if (notHash.length > 0) {
        problems.push({
          table: table.label,
          message: `${notHash.length} of ${sample.length} sampled keys under "${tablePrefix(table)}" are not hashes (e.g. "${notHash[0]}"); ibex would replace them: remove them or give the table a customname for this db`,
        });
      }
      if (badShape.length > 0) {
        problems.push({
          table: table.label,
          message: `${badShape.length} of ${sample.length} sampled keys under "${tablePrefix(table)}" are not keys of ${table.keys.length} value(s) (e.g. "${badShape[0]}"); another writer uses this prefix: give the table a customname for this db`,
        });
      }
    }
    return problems;
  }

  createTableSql(_table: TableSpec): string[] {
    return [];
  }

  async begin(): Promise<void> {
    // Nothing to open: Redis has no transaction spanning a run.
  }

  /**
   * The progress entries of a sync, or 'missing' when the server lost them. The rule: the
   * progress hash of the sync is absent, and this process has seen either that hash on this
   * server before, or ibex's marker key there (which every writeProgress leaves) and the marker
   * is now gone or holds another id. Either means the keyspace was emptied or replaced since (a
   * restart without persistence, FLUSHDB, failover to an empty replica). The server's run_id is
   * no help: a restart that reloads its data changes it without losing anything.
   *
   * A fresh ibex process cannot tell an emptied server from one never written; the engine, which
   * knows from the control db whether this target was ever applied, must treat [] then as lost.
   */
  async readProgress(sync: string): Promise<ProgressEntry[] | 'missing'> {
    let hash: Record<string, string>;
    let marker: string | null;
    try {
      [hash, marker] = await Promise.all([this.redis.hgetall(progressKey(sync)), this.redis.get(MARKER_KEY)]);
    } catch (err) {
      throw this.fail('reading progress', err);
    }
    const mem = seen.get(this.where) ?? { marker: undefined, syncs: new Set<string>() };
    seen.set(this.where, mem);
    // The fence record alone (a copy under way) is not progress: a refill cut short still reads as lost.
    const fields = Object.entries(hash).filter(([source]) => source !== FENCE_SOURCE);
    if (fields.length === 0) {
      const lostMarker = mem.marker !== undefined && marker !== mem.marker;
      if (mem.syncs.has(sync) || lostMarker) return 'missing';
      return [];
    }
    mem.syncs.add(sync);
    if (marker !== null) mem.marker = marker;
    const out: ProgressEntry[] = [];
    for (const [source, text] of fields) {
      const p = decodeProgress(text);
      if (p === undefined) {
        throw new IbexError('internal', `redis target "${this.name}": progress field "${source}" of ${progressKey(sync)} is not ibex's JSON; remove the field and run a onetimecopy`);
      }
      out.push({ source, snapshot: p.snapshot, run: p.run });
    }
    return out.sort((a, b) => a.source.localeCompare(b.source));
  }

  /** Send commands as MULTI chunks, a few in flight at once; throws on the first command that failed. */
  private async runChunks(what: string, items: number, add: (m: ChainableCommander, i: number) => void, perItem: number): Promise<unknown[]> {
    const perChunk = Math.max(1, Math.floor(CHUNK_COMMANDS / perItem));
    const chunks: [number, number][] = [];
    for (let s = 0; s < items; s += perChunk) chunks.push([s, Math.min(items, s + perChunk)]);
    const results: unknown[] = [];
    for (let w = 0; w < chunks.length; w += CHUNKS_IN_FLIGHT) {
      const window = chunks.slice(w, w + CHUNKS_IN_FLIGHT).map(([s, e]) => {
        const m = this.redis.multi();
        for (let i = s; i < e; i++) add(m, i);
        return m.exec();
      });
      let replies;
      try {
        replies = await Promise.all(window);
      } catch (err) {
        throw this.fail(what, err);
      }
      for (const reply of replies) {
        if (reply === null) throw this.fail(what, new Error('EXEC was aborted'));
        for (const [err, res] of reply) {
          if (err) throw this.fail(what, err);
          results.push(res);
        }
      }
    }
    return results;
  }

  async deleteKeys(table: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    if (keys.length === 0) return 0;
    const names = keys.map((k) => rowKey(table, k));
    const res = await this.runChunks(`deleting from ${table.label}`, names.length, (m, i) => m.unlink(names[i]!), 1);
    return res.reduce<number>((n, r) => n + Number(r), 0);
  }

  async upsertRows(table: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    if (rows.length === 0) return { applied: 0, refused: [] };
    const layout = rowLayout(table);
    const redis = this.redis as ScriptClient;
    const what = `writing ${table.label}`;
    let inFlight: Promise<number>[] = [];
    const settle = async (): Promise<void> => {
      const calls = inFlight;
      inFlight = [];
      try {
        await Promise.all(calls);
      } catch (err) {
        throw this.fail(what, err);
      }
    };
    let keys: string[] = [];
    let args: string[] = [];
    let bytes = 0;
    const send = async (): Promise<void> => {
      if (keys.length === 0) return;
      // Arrays, not spread: ioredis flattens them, and spreading 100k+ strings into one call
      // overflows the stack (RangeError), the same batch on every retry.
      const call = redis.ibexReplaceHashes(keys.length, keys, args);
      // Awaited in settle(); this only keeps a failure from counting as unhandled before then.
      call.catch(() => {});
      inFlight.push(call);
      keys = [];
      args = [];
      bytes = 0;
      if (inFlight.length >= CHUNKS_IN_FLIGHT) await settle();
    };
    for (const row of rows) {
      const fields = hashArgs(layout, row);
      const key = rowKey(table, keyOfRow(layout, row));
      keys.push(key);
      bytes += key.length;
      args.push(String(fields.length));
      for (const f of fields) {
        args.push(f);
        bytes += f.length;
      }
      if (keys.length >= REPLACE_ROWS || keys.length + args.length >= REPLACE_ARGS || bytes >= REPLACE_BYTES) await send();
    }
    await send();
    await settle();
    return { applied: rows.length, refused: [] };
  }

  /** Every key under the table's prefix, found with SCAN (never KEYS) and removed with UNLINK. */
  async truncate(table: TableSpec): Promise<void> {
    let cursor = '0';
    try {
      do {
        const [next, batch] = await this.redis.scan(cursor, 'MATCH', tablePattern(table), 'COUNT', SCAN_COUNT);
        cursor = next;
        // Only keys of the table's shape: SCAN MATCH is a glob, and another writer's odd key
        // under the prefix is reported by check(), not silently removed.
        const mine = batch.filter((k) => parseRowKey(table, k) !== undefined);
        // An array, not spread: SCAN's COUNT is only a hint, so a batch has no hard bound.
        if (mine.length > 0) await this.redis.unlink(mine);
      } while (cursor !== '0');
    } catch (err) {
      throw this.fail(`truncating ${table.label}`, err);
    }
  }

  /**
   * Written last, after every data chunk was acknowledged, with the marker (see readProgress).
   * Fenced entries go through FENCED_PROGRESS_LUA: checked and written in one atomic script, with
   * the sync's fence record among them, so two owners' writes are ordered on one field.
   */
  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    const mem = seen.get(this.where) ?? { marker: undefined, syncs: new Set<string>() };
    seen.set(this.where, mem);
    const epoch = epochOf(entries);
    let newer = 0;
    try {
      await this.redis.set(MARKER_KEY, randomUUID(), 'NX');
      const marker = await this.redis.get(MARKER_KEY);
      if (entries.length > 0) {
        if (epoch === undefined) {
          await this.redis.hset(progressKey(sync), new Map(entries.map((e) => [e.source, encodeProgress(e.snapshot, e.run)])));
        } else {
          const all = entries.some((e) => e.source === FENCE_SOURCE) ? entries : [...entries, fenceEntry(entries[0]!.run, epoch)];
          const args = all.flatMap((e) => [e.source, encodeProgress(e.snapshot, e.run, epoch)]);
          newer = Number(await this.redis.eval(FENCED_PROGRESS_LUA, 1, progressKey(sync), String(epoch), ...args));
        }
        mem.syncs.add(sync);
      }
      if (marker !== null) mem.marker = marker;
    } catch (err) {
      throw this.fail('writing progress', err);
    }
    if (epoch !== undefined && newer > epoch) throw new IbexError('daemon', fencedMessage(this.kind, this.name, sync, epoch, newer));
  }

  async commit(): Promise<void> {
    // Every write was acknowledged when its call returned; there is nothing to make durable here.
  }

  async rollback(): Promise<void> {
    // Redis cannot undo; the next run rewrites the keys this one touched.
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c === undefined) return;
    try {
      await c.quit();
    } catch {
      c.disconnect();
    }
  }

  /**
   * Every row of the table, its key values unescaped from the key, missing fields NULL, and each
   * value in the codec's canonical text.
   */
  async *scan(table: TableSpec): AsyncIterable<TextRow> {
    const layout = rowLayout(table);
    let cursor = '0';
    do {
      let batch: string[];
      let hashes: [Error | null, unknown][];
      try {
        [cursor, batch] = await this.redis.scan(cursor, 'MATCH', tablePattern(table), 'COUNT', SCAN_COUNT);
        const mine = batch.filter((k) => parseRowKey(table, k) !== undefined);
        batch = mine;
        const pipe = this.redis.pipeline();
        for (const k of mine) pipe.hgetall(k);
        hashes = mine.length === 0 ? [] : ((await pipe.exec()) ?? []);
      } catch (err) {
        throw this.fail(`scanning ${table.label}`, err);
      }
      for (let i = 0; i < batch.length; i++) {
        const [err, hash] = hashes[i] ?? [new Error('no reply'), null];
        if (err) continue; // not a hash: check() reports it
        const h = hash as Record<string, string>;
        if (Object.keys(h).length === 0) continue; // removed between SCAN and HGETALL
        const row = rowFromHash(table, layout, parseRowKey(table, batch[i]!)!, h);
        yield row.map((v, c) => canonicalOrAsIs(table.columns[c]!.type, v));
      }
    } while (cursor !== '0');
  }
}

/** The canonical text of a stored value; a value the codec cannot read stays as stored, so validate reports it. */
function canonicalOrAsIs(type: string, text: string | null): string | null {
  try {
    return canonicalText(type, text);
  } catch {
    return text;
  }
}
