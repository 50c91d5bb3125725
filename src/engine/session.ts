/**
 * A database session the daemon keeps open for as long as it runs (a LISTEN
 * session, the control session holding the leases): when it is lost it is
 * reopened with backoff, and the owner learns of both events, so it can catch
 * up on whatever it may have missed meanwhile. A ping notices a session whose
 * server vanished without closing the socket.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { errorText } from '../db/connect.js';
import { Backoff } from './backoff.js';
import { realTimers, type Timers } from './scheduler.js';

/** Options of a kept session. */
export interface KeptSessionOptions {
  /** For logs: `control` or the db's name. Never connection parameters. */
  name: string;
  /** Open the session and set it up (LISTEN …). */
  open: () => Promise<pg.Client>;
  /** The session is (again) up. Errors are logged. */
  onUp?: (client: pg.Client, reconnect: boolean) => void | Promise<void>;
  /** The session was lost; a reconnect is scheduled. */
  onDown?: () => void;
  log: Logger;
  backoff?: Backoff;
  timers?: Timers;
  /** Ping this often (0: never). Default 15 s. */
  pingMs?: number;
  /** A ping unanswered this long counts as a lost session. Default 10 s. */
  pingTimeoutMs?: number;
}

/** One session kept open, reopened with backoff when lost. */
export class KeptSession {
  private current: pg.Client | undefined;
  private closed = false;
  private attempt = 0;
  private everUp = false;
  private retryTimer: unknown;
  private pingTimer: unknown;
  private readonly backoff: Backoff;
  private readonly timers: Timers;
  private firstOutcome: Promise<void>;
  private settleFirst!: () => void;

  constructor(private readonly opts: KeptSessionOptions) {
    this.backoff = opts.backoff ?? new Backoff();
    this.timers = opts.timers ?? realTimers;
    this.firstOutcome = new Promise((resolve) => (this.settleFirst = resolve));
  }

  /** Start connecting; resolves after the first attempt, successful or not. */
  start(): Promise<void> {
    void this.connect();
    return this.firstOutcome;
  }

  /** The session, when it is up. */
  client(): pg.Client | undefined {
    return this.current;
  }

  /** Is the session up? */
  get up(): boolean {
    return this.current !== undefined;
  }

  /** Treat the session as lost (e.g. a query on it failed with a connection error). */
  drop(): void {
    if (this.current) this.lost(this.current);
  }

  /** Close the session for good. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of [this.retryTimer, this.pingTimer]) if (t !== undefined) this.timers.clearTimeout(t);
    this.retryTimer = this.pingTimer = undefined;
    const c = this.current;
    this.current = undefined;
    this.settleFirst();
    if (c) await c.end().catch(() => {}); // best effort: the session is being dropped
  }

  private async connect(): Promise<void> {
    this.retryTimer = undefined;
    if (this.closed) return;
    let c: pg.Client;
    try {
      c = await this.opts.open();
    } catch (err) {
      this.attempt++;
      const delay = this.backoff.delay(this.attempt);
      const line = { session: this.opts.name, attempt: this.attempt, retryMs: delay, err: errorText(err) };
      if (this.attempt === 1 || this.attempt % 10 === 0) this.opts.log.warn(line, 'cannot open session; retrying');
      else this.opts.log.debug(line, 'cannot open session; retrying');
      this.settleFirst();
      if (!this.closed) this.retryTimer = this.timers.setTimeout(() => void this.connect(), delay);
      return;
    }
    if (this.closed) {
      await c.end().catch(() => {}); // best effort: the session is being dropped
      return;
    }
    c.on('end', () => this.lost(c));
    c.on('error', () => this.lost(c));
    const reconnect = this.everUp;
    if (this.attempt > 0 || reconnect) this.opts.log.info({ session: this.opts.name, attempts: this.attempt }, reconnect ? 'session reopened' : 'session opened');
    this.current = c;
    this.attempt = 0;
    this.everUp = true;
    this.armPing();
    try {
      await this.opts.onUp?.(c, reconnect);
    } catch (err) {
      this.opts.log.error({ session: this.opts.name, err: errorText(err) }, 'setting up the session failed');
    }
    this.settleFirst();
  }

  private lost(c: pg.Client): void {
    if (this.current !== c) return;
    this.current = undefined;
    if (this.pingTimer !== undefined) this.timers.clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
    c.end().catch(() => {}); // best effort: the session is being dropped
    if (this.closed) return;
    this.opts.log.warn({ session: this.opts.name }, 'session lost; reopening');
    try {
      this.opts.onDown?.();
    } catch (err) {
      this.opts.log.error({ session: this.opts.name, err: errorText(err) }, 'handling a lost session failed');
    }
    this.attempt = 1;
    this.retryTimer = this.timers.setTimeout(() => void this.connect(), this.backoff.delay(1));
  }

  private armPing(): void {
    const every = this.opts.pingMs ?? 15_000;
    if (every <= 0 || this.closed) return;
    this.pingTimer = this.timers.setTimeout(() => void this.ping(), every);
  }

  private async ping(): Promise<void> {
    this.pingTimer = undefined;
    const c = this.current;
    if (!c) return;
    let timer: unknown;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.timers.setTimeout(() => reject(new Error('ping timed out')), this.opts.pingTimeoutMs ?? 10_000);
    });
    try {
      await Promise.race([c.query('SELECT 1'), timeout]);
    } catch (err) {
      this.opts.log.warn({ session: this.opts.name, err: errorText(err) }, 'session does not answer');
      this.lost(c);
      return;
    } finally {
      this.timers.clearTimeout(timer);
    }
    if (this.current === c) this.armPing();
  }
}
