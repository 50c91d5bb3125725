/**
 * A scripted MongoDB wire peer (mongodb-mock-server): it answers the handshake, records every
 * command the driver sends, decodes the documents exactly as they went over the wire (int64
 * stays Long), and replies with what a test scripts, else a plain success.
 *
 * It checks what ibex sends, not how a real server behaves.
 */
import { createRequire } from 'node:module';
import mock from 'mongodb-mock-server';
import { BSON } from 'mongodb';
import type { Document } from 'mongodb';

/**
 * The peer's own BSON library (an older major than the driver's): scripted replies that hold
 * Long, Decimal128 or Binary must be built with these classes, which the peer can serialize.
 */
export const peerBson = createRequire(createRequire(import.meta.url).resolve('mongodb-mock-server'))('bson') as {
  Long: { fromString(s: string): unknown; ZERO: unknown };
  Decimal128: { fromString(s: string): unknown };
  Binary: new (buf: Buffer, subtype: number) => unknown;
};

/** One command as the peer received it. */
export interface WireCommand {
  /** The command name: update, delete, find, ping … */
  name: string;
  /** The database it was sent to. */
  db: string;
  /** The command document (document sequences replaced by their exactly decoded documents). */
  doc: Document;
  /** The documents of `updates` / `deletes`, decoded with int64 kept as Long. */
  items: Document[];
}

/**
 * A test's answer to a command; undefined for the default success. A `$delayMs` field in the
 * answer holds the reply back that long (and is not sent).
 */
export type Script = (cmd: WireCommand, nth: number) => Document | undefined;

/** A running peer. */
export interface MongoWire {
  url: string;
  commands: WireCommand[];
  /** What happened in order: `recv <name> <collection>` and `reply <name> <collection>`. */
  events: string[];
  /** Commands other than the handshake and session bookkeeping. */
  writes(): WireCommand[];
  script: Script | undefined;
  /** Forget the recorded commands and the script. */
  reset(): void;
  close(): Promise<void>;
}

const HANDSHAKE = new Set(['ismaster', 'isMaster', 'hello']);
const QUIET = new Set([...HANDSHAKE, 'endSessions', 'ping', 'buildInfo', 'buildinfo']);

/** The documents of a document sequence (as the mock decodes one) or a plain array. */
function sequenceDocs(v: unknown): Document[] {
  if (Array.isArray(v)) return v as Document[];
  const seq = v as { chunks?: { buffer: Uint8Array }[]; documents?: Document[] } | undefined;
  if (seq?.chunks) return seq.chunks.slice(1).map((c) => BSON.deserialize(Buffer.from(c.buffer), { promoteLongs: false }));
  return seq?.documents ?? [];
}

/** Start a peer on a free port. */
export async function startMongoWire(): Promise<MongoWire> {
  const server = await mock.createServer(0, '127.0.0.1');
  const counts = new Map<string, number>();
  const wire: MongoWire = {
    url: '',
    commands: [],
    events: [],
    writes: () => wire.commands.filter((c) => !QUIET.has(c.name)),
    script: undefined,
    reset: () => {
      wire.commands.length = 0;
      wire.events.length = 0;
      wire.script = undefined;
      counts.clear();
    },
    close: async () => {
      await server.destroy();
    },
  };
  server.setMessageHandler((req) => {
    const doc = req.document;
    const name = Object.keys(doc)[0] ?? '';
    if (HANDSHAKE.has(name)) {
      req.reply({ ...mock.DEFAULT_ISMASTER, maxWireVersion: 21, minWireVersion: 0, maxWriteBatchSize: 100_000, logicalSessionTimeoutMinutes: 30, localTime: new Date() });
      return;
    }
    const items = name === 'update' ? sequenceDocs(doc.updates) : name === 'delete' ? sequenceDocs(doc.deletes) : [];
    const cmd: WireCommand = { name, db: req.response.ns.split('.')[0] ?? '', doc, items };
    wire.commands.push(cmd);
    const nth = counts.get(name) ?? 0;
    counts.set(name, nth + 1);
    const label = `${name} ${String(doc[name])}`;
    wire.events.push(`recv ${label}`);
    const send = (reply: Document): void => {
      wire.events.push(`reply ${label}`);
      req.reply(reply);
    };
    const scripted = wire.script?.(cmd, nth);
    if (scripted !== undefined) {
      const { $delayMs, ...reply } = scripted;
      if (typeof $delayMs === 'number') setTimeout(() => send(reply), $delayMs);
      else send(reply);
      return;
    }
    switch (name) {
      case 'update':
        send({ ok: 1, n: items.length, nModified: 0 });
        return;
      case 'delete':
        send({ ok: 1, n: items.length });
        return;
      case 'find':
        send({ ok: 1, cursor: { id: peerBson.Long.ZERO, ns: `${cmd.db}.${String(doc.find)}`, firstBatch: [] } });
        return;
      case 'buildInfo':
      case 'buildinfo':
        send({ ok: 1, version: '7.0.99-wire-peer' });
        return;
      default:
        send({ ok: 1 });
    }
  });
  wire.url = `mongodb://${server.uri()}/?directConnection=true`;
  return wire;
}
