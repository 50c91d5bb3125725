/**
 * Connections to PostgreSQL: libpq-style parameters (including service files
 * and .pgpass, via the driver), pinned session settings, text-in/text-out
 * values, and a description that never contains a password.
 */
import { readFileSync, existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { IbexError } from '../errors.js';

/** Where and how to reach one PostgreSQL database (libpq's vocabulary). */
export interface PgParams {
  host?: string | undefined;
  port?: number | undefined;
  dbname?: string | undefined;
  user?: string | undefined;
  /** Only ever held in memory or in the control database; never printed. */
  password?: string | undefined;
  /** Extra libpq parameters, `key=value` separated by spaces (sslmode, connect_timeout …). */
  conn?: string | undefined;
  /** A service name from pg_service.conf. */
  service?: string | undefined;
}

/** Options for one session. */
export interface SessionOptions {
  /** `application_name`, e.g. `ibex/<sync>`. */
  applicationName?: string;
  /** `statement_timeout` in milliseconds (0 = none). */
  statementTimeoutMs?: number;
  /** `lock_timeout` in milliseconds (0 = none). */
  lockTimeoutMs?: number;
  /** Seconds to wait for the connection itself. */
  connectTimeoutS?: number;
  /**
   * Parse values into JavaScript types (the control database). Replicated
   * databases are read as text, exactly as the server prints them.
   */
  parseTypes?: boolean;
}

/** The settings every ibex session pins, so values round-trip exactly (DESIGN, "Values"). */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  DateStyle: 'ISO',
  IntervalStyle: 'postgres',
  TimeZone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
  client_encoding: 'UTF8',
  synchronous_commit: 'on',
  row_security: 'off',
  // Literals ibex builds double quotes only; backslashes must stay plain characters.
  standard_conforming_strings: 'on',
};

const SUPPORTED_CONN_KEYS = new Set([
  'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'connect_timeout', 'application_name', 'options', 'keepalives_idle',
]);

/** Parse `key=value key2='v a l'` (libpq conninfo syntax, as used by `conn=`). */
export function parseConninfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const s = text.trim();
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i]!)) i++;
    if (i >= s.length) break;
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new IbexError('usage', `bad connection option "${s.slice(i)}": write key=value`);
    const key = s.slice(i, eq).trim();
    i = eq + 1;
    while (i < s.length && s[i] === ' ') i++;
    let value = '';
    if (s[i] === "'") {
      i++;
      while (i < s.length && s[i] !== "'") {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        value += s[i];
        i++;
      }
      if (s[i] !== "'") throw new IbexError('usage', `unterminated quote in connection option "${key}"`);
      i++;
    } else {
      while (i < s.length && !/\s/.test(s[i]!)) {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        value += s[i];
        i++;
      }
    }
    if (!key) throw new IbexError('usage', 'a connection option has an empty name');
    out.set(key, value);
  }
  return out;
}

/** Check extra connection options early, so a typo fails at `add db`, not at 3 a.m. */
export function checkConnOptions(conn: string | undefined): void {
  if (!conn) return;
  for (const key of parseConninfo(conn).keys()) {
    if (!SUPPORTED_CONN_KEYS.has(key)) {
      throw new IbexError('usage', `unsupported connection option "${key}" in conn=: use one of ${[...SUPPORTED_CONN_KEYS].join(', ')}`);
    }
  }
}

/** Read a service definition from the pg_service.conf files libpq would read. */
export function readService(name: string): Map<string, string> {
  const files = [
    process.env.PGSERVICEFILE,
    join(homedir(), '.pg_service.conf'),
    process.env.PGSYSCONFDIR ? join(process.env.PGSYSCONFDIR, 'pg_service.conf') : undefined,
    '/etc/postgresql-common/pg_service.conf',
  ].filter((f): f is string => !!f);
  for (const file of files) {
    if (!existsSync(file)) continue;
    let section: string | undefined;
    const found = new Map<string, string>();
    let seen = false;
    for (const rawLine of readFileSync(file, 'utf8').split('\n')) {
      const line = rawLine.trim();
      if (!line || line.startsWith('#')) continue;
      const m = /^\[(.+)\]$/.exec(line);
      if (m) {
        section = m[1];
        if (section === name) seen = true;
        continue;
      }
      if (section !== name) continue;
      const eq = line.indexOf('=');
      if (eq > 0) found.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
    }
    if (seen) return found;
  }
  throw new IbexError('usage', `service "${name}" is not defined in any pg_service.conf: define it, or give host= port= dbname= instead`);
}

/** Resolve parameters into a driver configuration (without session options). */
export function resolveParams(p: PgParams): pg.ClientConfig {
  const svc = p.service ? readService(p.service) : new Map<string, string>();
  const extra = p.conn ? parseConninfo(p.conn) : new Map<string, string>();
  const pick = (key: string, own: string | number | undefined): string | undefined =>
    own !== undefined && own !== '' ? String(own) : (extra.get(key) ?? svc.get(key));
  const host = pick('host', p.host) ?? process.env.PGHOST ?? '/var/run/postgresql';
  const portText = pick('port', p.port) ?? process.env.PGPORT;
  const config: pg.ClientConfig = {
    host,
    port: portText ? Number(portText) : 5432,
    database: pick('dbname', p.dbname),
    user: pick('user', p.user) ?? process.env.PGUSER ?? osUser(),
  };
  const password = p.password ?? svc.get('password');
  if (password !== undefined && password !== '') config.password = password;
  const sslmode = extra.get('sslmode') ?? svc.get('sslmode');
  if (sslmode && sslmode !== 'disable' && sslmode !== 'allow' && sslmode !== 'prefer') {
    config.ssl = sslmode === 'verify-full' || sslmode === 'verify-ca'
      ? { rejectUnauthorized: true, ...(extra.get('sslrootcert') ? { ca: readFileSync(extra.get('sslrootcert')!, 'utf8') } : {}) }
      : { rejectUnauthorized: false };
  }
  const ct = extra.get('connect_timeout') ?? svc.get('connect_timeout');
  if (ct) config.connectionTimeoutMillis = Number(ct) * 1000;
  return config;
}

/**
 * libpq's default user: the operating system user, not $USER (which a service manager
 * or `env -i` may leave unset; the driver would then send no user at all).
 */
function osUser(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER;
  }
}

/** Where a password can come from, for the message of a server that asks for one we do not have. */
export const PASSWORD_SOURCES = 'pass=- (asks, or reads IBEX_PASSWORD), ~/.pgpass (or PGPASSFILE), a pg_service.conf service that sets the password, or PGPASSWORD';

/** The driver's texts for "the server asked for a password and the client has none". */
export function isMissingPassword(err: unknown): boolean {
  return /client password must be a string|password authentication .*no password/i.test(errorText(err));
}

/** A description of where a connection goes, safe to print: never a password. */
export function describeParams(p: PgParams): string {
  const c = resolveParams({ ...p, password: undefined });
  const where = String(c.host).startsWith('/') ? `socket ${c.host}` : `${c.host}`;
  return `${where}:${c.port} dbname=${c.database ?? '(default)'} user=${c.user ?? '(default)'}`;
}

function quoteOption(value: string): string {
  return value.replace(/([\\ ])/g, '\\$1');
}

/** Every value arrives as text, exactly as the server printed it (DESIGN, "Values"). */
const identityTypes = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** Open one session with ibex's pinned settings. The caller ends it. */
export async function connect(p: PgParams, opts: SessionOptions = {}): Promise<pg.Client> {
  const config = resolveParams(p);
  const settings: Record<string, string> = { ...PINNED_SETTINGS };
  settings.statement_timeout = String(opts.statementTimeoutMs ?? 0);
  settings.lock_timeout = String(opts.lockTimeoutMs ?? 0);
  delete settings.client_encoding; // the driver sets it in the startup packet
  config.options = Object.entries(settings).map(([k, v]) => `-c ${k}=${quoteOption(v)}`).join(' ');
  config.application_name = opts.applicationName ?? 'ibex';
  if (!opts.parseTypes) config.types = identityTypes;
  if (config.connectionTimeoutMillis === undefined) config.connectionTimeoutMillis = (opts.connectTimeoutS ?? 10) * 1000;
  const client = new pg.Client(config);
  // An idle client whose server goes away emits 'error'; without a listener Node would crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    if (isMissingPassword(err)) {
      throw new IbexError('unreachable', `${describeParams(p)} needs a password and none was given: give it with ${PASSWORD_SOURCES}`, { cause: err });
    }
    throw new IbexError('unreachable', `cannot connect to ${describeParams(p)}: ${redact(errorText(err), p.password)}`, { cause: err });
  }
  return client;
}

/** The message of any thrown value. */
export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length) return errorText(err.errors[0]);
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Remove a password (and any `password=`/URL userinfo) from a text before it is shown. */
export function redact(text: string, password?: string): string {
  let out = text;
  if (password) out = out.split(password).join('********');
  out = out.replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1********');
  // Any scheme: postgresql://, mongodb://, mongodb+srv:// … carry the password the same way.
  out = out.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]+:)[^@\s]+@/gi, '$1********@');
  return out;
}

/** Parse a libpq URL (postgresql://user:pass@host:port/db?host=/sock&sslmode=…) into parameters. */
export function parseUrl(url: string): PgParams {
  const m = /^(postgres(?:ql)?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?(\[[^\]]*\]|[^/?:]*)(?::(\d*))?(?:\/([^?]*))?(?:\?(.*))?$/.exec(url);
  if (!m) throw new IbexError('usage', `"${redact(url)}" is not a valid postgresql:// URL: write postgresql://user@host:port/dbname`);
  const dec = (v: string | undefined): string | undefined => (v ? decodeURIComponent(v) : undefined);
  const p: PgParams = {};
  const host = dec(m[4])?.replace(/^\[(.*)\]$/, '$1');
  if (host) p.host = host;
  if (m[5]) p.port = Number(m[5]);
  if (m[6]) p.dbname = dec(m[6]);
  if (m[2]) p.user = dec(m[2]);
  if (m[3]) p.password = dec(m[3]);
  const extra: string[] = [];
  for (const [k, v] of new URLSearchParams(m[7] ?? '')) {
    if (k === 'host') p.host = v;
    else if (k === 'port') p.port = Number(v);
    else if (k === 'dbname') p.dbname = v;
    else if (k === 'user') p.user = v;
    else if (k === 'password') p.password = v;
    else if (k === 'service') p.service = v;
    else extra.push(`${k}='${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`);
  }
  if (p.port !== undefined && !(p.port >= 1 && p.port <= 65535)) throw new IbexError('usage', `bad port in "${redact(url)}": give a number from 1 to 65535`);
  if (extra.length) p.conn = extra.join(' ');
  return p;
}

/**
 * End a session we are done with. Best effort by design: it runs in `finally` blocks after the
 * work succeeded or failed, and an error here only means the session is already gone, which is
 * what ending it was for; throwing would hide the outcome of the work itself.
 */
export async function endQuietly(c: pg.Client | undefined): Promise<void> {
  await c?.end().catch(() => {});
}
