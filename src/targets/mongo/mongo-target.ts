/**
 * The MongoDB target: one document per row (layout in `mongo-dialect.ts`), written with unordered
 * bulk writes of keyed replaces and deletes under `{w: 'majority', j: true}`, and the progress
 * record upserted only after every data write was acknowledged.
 *
 * Not transactional: a standalone server has no multi-document transactions, so a run that fails
 * half-way leaves part of its rows written, and the next run rewrites them (every write is a
 * keyed replace or delete of the current winner). A run has at most one operation per key, so
 * the order inside a bulk write does not matter.
 */
import type { AnyBulkWriteOperation, BulkWriteResult, Db, Document, MongoClient } from 'mongodb';
import { IbexError } from '../../errors.js';
import { connected, firstLine, targetFailure } from '../failure.js';
import type {
  KeyRow,
  Problem,
  ProgressEntry,
  RefusedRow,
  TableSpec,
  Target,
  TargetCaps,
  TargetParams,
  TextRow,
  UpsertOutcome,
} from '../target.js';
import { epochOf, FENCE_SOURCE, fencedMessage } from '../target.js';
import {
  MAX_DOCUMENT_BYTES,
  PROGRESS_COLLECTION,
  RefusedValue,
  docLayout,
  fieldNameProblem,
  idOf,
  keyOfRow,
  fenceUpdate,
  progressDoc,
  progressId,
  rowDocument,
  rowOfDocument,
  type BsonKit,
} from './mongo-dialect.js';

/** Operations per bulkWrite call: bounds memory and the size of a retry; the driver splits further by message size. */
export const BULK_OPS = 1000;

/** Duplicate key: two upserts of one _id raced (the loser's insert hits the winner's). */
const DUPLICATE_KEY = 11000;

const WRITE_CONCERN = { w: 'majority' as const, journal: true };

/**
 * Codes a write error can carry that say the server, the network or the operation failed, not the
 * document: those fail the run (and a retry may pass). Any other write error is the document's
 * own (validation, nesting depth, a field name the server will not store, another unique index),
 * would come back on every retry, and refuses that row instead.
 */
const NOT_ABOUT_THE_DOCUMENT = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  13, // Unauthorized
  18, // AuthenticationFailed
  24, // LockTimeout
  46, // LockBusy
  50, // MaxTimeMSExpired
  63, // StaleShardVersion
  64, // WriteConcernFailed
  89, // NetworkTimeout
  91, // ShutdownInProgress
  112, // WriteConflict
  133, // FailedToSatisfyReadPreference
  150, // StaleEpoch
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10058, // LegacyNotPrimary
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11601, // Interrupted
  11602, // InterruptedDueToReplStateChange
  13388, // StaleConfig
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** An operation of a bulk write the server rejected for its document: its index among the operations given, and why. */
interface Rejected {
  index: number;
  code: number;
  errmsg: string;
}

/** Create a MongoDB target for these parameters (the registry's factory). */
export function createTarget(params: TargetParams): Target {
  return new MongoTarget(params);
}

/** See the module comment. */
export class MongoTarget implements Target {
  readonly kind = 'mongo' as const;
  readonly name: string;
  readonly caps: TargetCaps = { transactional: false, progressInTxn: false, copyText: false };
  private readonly params: TargetParams;
  private readonly url: string;
  private readonly dbName: string;
  private client: MongoClient | undefined;
  private db: Db | undefined;
  private bson: BsonKit | undefined;

  constructor(params: TargetParams) {
    this.params = params;
    this.name = params.name;
    if (!params.dbname) {
      throw new IbexError('usage', `db "${params.name}": a mongo target needs dbname=<database>`);
    }
    this.dbName = params.dbname;
    if (params.conn) {
      if (!/^mongodb(\+srv)?:\/\//.test(params.conn)) {
        throw new IbexError('usage', `db "${params.name}": conn= must be a mongodb:// or mongodb+srv:// connection string`);
      }
      this.url = params.conn;
    } else {
      const host = params.host || '127.0.0.1';
      this.url = `mongodb://${host.includes(':') ? `[${host}]` : host}:${params.port ?? 27017}/`;
    }
  }

  /** A message with every secret cut out: the password and any password inside the connection string. */
  private clean(message: string): string {
    let out = message.replace(/(mongodb(?:\+srv)?:\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@');
    const pw = this.params.password;
    if (pw) out = out.split(pw).join('***');
    const inUrl = /^mongodb(?:\+srv)?:\/\/[^:/@]*:([^@]*)@/.exec(this.params.conn ?? '')?.[1];
    if (inUrl) out = out.split(inUrl).join('***');
    return out;
  }

  private where(): string {
    return this.clean(this.url);
  }

  private fail(what: string, err: unknown): IbexError {
    return targetFailure(this.params, what, err);
  }

  private get database(): Db {
    return connected(this.db, this.params);
  }

  private get kit(): BsonKit {
    return connected(this.bson, this.params);
  }

  async connect(): Promise<void> {
    const mongodb = await import('mongodb');
    this.bson = { Long: mongodb.Long, Decimal128: mongodb.Decimal128, Binary: mongodb.Binary, BSON: mongodb.BSON };
    const client = new mongodb.MongoClient(this.url, {
      appName: 'ibex',
      // The connection string's own timeouts win (a test or a slow network may set them).
      ...(/[?&]serverSelectionTimeoutMS=/i.test(this.url) ? {} : { serverSelectionTimeoutMS: 10_000 }),
      ...(/[?&]connectTimeoutMS=/i.test(this.url) ? {} : { connectTimeoutMS: 10_000 }),
      ...(this.params.user ? { auth: { username: this.params.user, password: this.params.password ?? '' } } : {}),
    });
    try {
      await client.connect();
      await client.db(this.dbName).command({ ping: 1 });
    } catch (err) {
      await client.close().catch(() => undefined);
      const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new IbexError('unreachable', this.clean(`mongo target "${this.name}": cannot connect to ${this.where()}: ${msg}`), { cause: err });
    }
    this.client = client;
    this.db = client.db(this.dbName);
  }

  async probe(): Promise<{ version: string }> {
    try {
      const info = await this.database.admin().command({ buildInfo: 1 });
      return { version: `MongoDB ${String(info.version ?? 'unknown')}` };
    } catch (err) {
      throw this.fail('buildInfo', err);
    }
  }

  /** Collections need no schema; what can fail is a column name MongoDB cannot hold as a field. */
  async check(tables: readonly TableSpec[]): Promise<Problem[]> {
    const problems: Problem[] = [];
    for (const t of tables) {
      const p = fieldNameProblem(t);
      if (p !== undefined) problems.push({ table: t.label, message: p });
      if (t.targetName === PROGRESS_COLLECTION || t.targetName.startsWith('system.') || t.targetName.includes('$') || t.targetName === '') {
        problems.push({ table: t.label, message: `"${t.targetName}" cannot be a collection of ibex's; give the table another customname for this db` });
      }
    }
    return problems;
  }

  createTableSql(_table: TableSpec): string[] {
    return [];
  }

  async begin(): Promise<void> {
    // No transaction: a standalone server has none (see the module comment).
  }

  async readProgress(sync: string): Promise<ProgressEntry[] | 'missing'> {
    let docs: Document[];
    try {
      docs = await this.database.collection(PROGRESS_COLLECTION).find({ '_id.sync': sync }).toArray();
    } catch (err) {
      throw this.fail('reading progress', err);
    }
    const out: ProgressEntry[] = [];
    for (const d of docs) {
      const id = d._id as Document;
      if (id?.source === FENCE_SOURCE) continue;
      const run = typeof d.run === 'number' ? d.run : Number(d.run);
      if (typeof id?.source !== 'string' || typeof d.snapshot !== 'string' || !Number.isInteger(run)) {
        throw new IbexError('internal', `mongo target "${this.name}": a progress document of sync ${sync} in ${PROGRESS_COLLECTION} is not ibex's; remove it and run a onetimecopy`);
      }
      out.push({ source: id.source, snapshot: d.snapshot, run });
    }
    return out.sort((a, b) => a.source.localeCompare(b.source));
  }

  /**
   * Unordered bulk writes of at most BULK_OPS operations. Operations that failed with a duplicate
   * key (an upsert race) are sent once more. Operations the server rejected for their document
   * (and a duplicate key that comes back) are answered as rejected, the rest applied; a write
   * error not about the document (NOT_ABOUT_THE_DOCUMENT), a write concern error or any other
   * failure fails the run.
   */
  private async bulk(collection: string, ops: AnyBulkWriteOperation[], what: string): Promise<{ deleted: number; rejected: Rejected[] }> {
    let deleted = 0;
    const rejected: Rejected[] = [];
    for (let s = 0; s < ops.length; s += BULK_OPS) {
      // Indexes into `ops` of the operations sent: a write error's index is into the call's own list.
      let pending = ops.slice(s, s + BULK_OPS).map((_, i) => s + i);
      for (let attempt = 0; pending.length > 0; attempt++) {
        let result: BulkWriteResult | undefined;
        try {
          result = await this.database.collection(collection).bulkWrite(pending.map((i) => ops[i]!), { ordered: false, writeConcern: WRITE_CONCERN });
          deleted += result.deletedCount;
          break;
        } catch (err) {
          const e = err as { name?: string; writeErrors?: unknown; result?: BulkWriteResult; errorResponse?: Document };
          if (e.name !== 'MongoBulkWriteError' || e.result === undefined) throw this.fail(what, err);
          const wce = e.result.getWriteConcernError();
          if (wce !== undefined) {
            throw new IbexError('internal', this.clean(`mongo target "${this.name}": ${what}: the write concern {w: majority, j: true} was not satisfied (code ${wce.code}): ${wce.errmsg ?? ''}`.trim()), { cause: err });
          }
          const writeErrors = e.result.getWriteErrors();
          const notTheDocument = writeErrors.find((w) => NOT_ABOUT_THE_DOCUMENT.has(w.code));
          if (writeErrors.length === 0 || notTheDocument !== undefined) {
            const first = notTheDocument ?? writeErrors[0];
            const which = notTheDocument !== undefined ? 'first not about the document' : 'first';
            throw new IbexError('internal', this.clean(`mongo target "${this.name}": ${what}: ${writeErrors.length} write(s) failed, ${which} (code ${first?.code}): ${firstLine(first?.errmsg ?? err)}`), { cause: err });
          }
          deleted += e.result.deletedCount;
          const retry: number[] = [];
          for (const w of writeErrors) {
            const index = pending[w.index]!;
            if (w.code === DUPLICATE_KEY && attempt === 0) retry.push(index);
            else rejected.push({ index, code: w.code, errmsg: firstLine(w.errmsg ?? '') });
          }
          pending = retry;
        }
      }
    }
    return { deleted, rejected: rejected.sort((a, b) => a.index - b.index) };
  }

  /** Rejected writes where none may be (deletes, progress): the run fails, naming the first. */
  private noneRejected(rejected: Rejected[], what: string): void {
    const first = rejected[0];
    if (first === undefined) return;
    throw new IbexError('internal', this.clean(`mongo target "${this.name}": ${what}: ${rejected.length} write(s) failed, first (code ${first.code}): ${first.errmsg}`));
  }

  async deleteKeys(table: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    const ops: AnyBulkWriteOperation[] = [];
    for (const k of keys) {
      try {
        ops.push({ deleteOne: { filter: { _id: idOf(this.kit, table, k) } as Document } });
      } catch (err) {
        // A key MongoDB cannot hold (a timestamptz of infinity) cannot be stored there either: nothing to delete.
        if (!(err instanceof RefusedValue)) throw err;
      }
    }
    if (ops.length === 0) return 0;
    const { deleted, rejected } = await this.bulk(table.targetName, ops, `deleting from ${table.label}`);
    this.noneRejected(rejected, `deleting from ${table.label}`);
    return deleted;
  }

  async upsertRows(table: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    const problem = fieldNameProblem(table);
    if (problem !== undefined) throw new IbexError('config', `mongo target "${this.name}": ${table.label}: ${problem}`);
    const layout = docLayout(table);
    const refused: RefusedRow[] = [];
    const ops: AnyBulkWriteOperation[] = [];
    const keysOf: KeyRow[] = [];
    for (const row of rows) {
      let doc: Document;
      try {
        doc = rowDocument(this.kit, table, layout, row);
      } catch (err) {
        if (!(err instanceof RefusedValue)) throw err;
        refused.push({ key: keyOfRow(layout, row), reason: err.message });
        continue;
      }
      const size = this.kit.BSON.calculateObjectSize(doc);
      if (size > MAX_DOCUMENT_BYTES) {
        refused.push({ key: keyOfRow(layout, row), reason: `the row is a ${size}-byte document, over MongoDB's ${MAX_DOCUMENT_BYTES}-byte limit; shrink it or leave the table out of this target` });
        continue;
      }
      ops.push({ replaceOne: { filter: { _id: doc._id }, replacement: doc, upsert: true } });
      keysOf.push(keyOfRow(layout, row));
    }
    if (ops.length === 0) return { applied: 0, refused };
    const { rejected } = await this.bulk(table.targetName, ops, `writing ${table.label}`);
    for (const r of rejected) refused.push({ key: keysOf[r.index]!, reason: `MongoDB refused the document (code ${r.code}): ${r.errmsg}` });
    return { applied: ops.length - rejected.length, refused };
  }

  async truncate(table: TableSpec): Promise<void> {
    try {
      await this.database.collection(table.targetName).deleteMany({}, { writeConcern: WRITE_CONCERN });
    } catch (err) {
      throw this.fail(`truncating ${table.label}`, err);
    }
  }

  /**
   * Upserted after every data write of the run was acknowledged (the engine calls it last).
   * Fenced entries first raise the sync's fence record to their epoch with one conditional
   * upsert (fenceUpdate), refused when it holds a newer one.
   */
  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const epoch = epochOf(entries);
    if (epoch !== undefined) {
      const f = fenceUpdate(sync, entries[0]!.run, epoch);
      try {
        await this.database.collection(PROGRESS_COLLECTION).updateOne(f.filter, f.update, { upsert: true, writeConcern: WRITE_CONCERN });
      } catch (err) {
        if ((err as { code?: unknown }).code !== DUPLICATE_KEY) throw this.fail('checking the lease epoch', err);
        const doc = await this.database.collection(PROGRESS_COLLECTION).findOne({ _id: progressId(sync, FENCE_SOURCE) as never }).catch(() => null);
        throw new IbexError('daemon', fencedMessage(this.kind, this.name, sync, epoch, Number(doc?.epoch ?? epoch + 1)));
      }
    }
    const ops: AnyBulkWriteOperation[] = entries.filter((e) => e.source !== FENCE_SOURCE).map((e) => {
      const replacement = progressDoc(sync, e);
      return { replaceOne: { filter: { _id: replacement._id }, replacement, upsert: true } };
    });
    if (ops.length) this.noneRejected((await this.bulk(PROGRESS_COLLECTION, ops, 'writing progress')).rejected, 'writing progress');
  }

  async commit(): Promise<void> {
    // Every write was acknowledged with {w: majority, j: true} when its call returned.
  }

  async rollback(): Promise<void> {
    // Nothing can be undone; the next run rewrites the documents this one touched.
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.db = undefined;
    if (c !== undefined) await c.close().catch(() => undefined);
  }

  async *scan(table: TableSpec): AsyncIterable<TextRow> {
    const cursor = this.database.collection(table.targetName).find({});
    try {
      for await (const doc of cursor) yield rowOfDocument(table, doc);
    } catch (err) {
      throw this.fail(`scanning ${table.label}`, err);
    } finally {
      await cursor.close().catch(() => undefined);
    }
  }
}
