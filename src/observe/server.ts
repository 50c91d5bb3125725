/**
 * The daemon's HTTP server (`ibex run --http=ADDR:PORT`, or the http_listen
 * setting), on Node's http module: /metrics, /healthz, /readyz, the
 * dashboard at / and its data at /api/state. Read-only: every route answers
 * GET (and HEAD) only, and nothing it shows carries a password or DSN.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { errorText } from '../db/connect.js';
import { IbexError, usage } from '../errors.js';
import { DASHBOARD_HTML } from './dashboard.js';
import type { Observer } from './observer.js';
import { stringifyExactJson } from '../db/json.js';

/** Parse `HOST:PORT`, `:PORT` or `PORT` (host defaults to 127.0.0.1: the endpoints are for this machine unless asked). */
export function parseListen(value: string): { host: string; port: number } {
  const v = value.trim();
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(v) ?? (/^(\d{1,5})$/.exec(v) ? [v, undefined, '', v] : null);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw usage(`bad listen address "${value}": give HOST:PORT, e.g. --http=127.0.0.1:9187 (port 0 picks a free one)`);
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** A running HTTP server. */
export interface HttpServer {
  /** The address it listens on (the real port when 0 was asked). */
  address: { host: string; port: number };
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
};

/** Listen on `listen` and serve the observer's facts. */
export async function startHttp(observer: Observer, listen: { host: string; port: number }, log: Logger): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    void handle(observer, req, res).catch((err) => {
      log.warn({ path: req.url, err: errorText(err) }, 'http request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // A slow or idle client must not keep the daemon from stopping.
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new IbexError('usage', `cannot listen on ${listen.host}:${listen.port} for --http: ${err.code === 'EADDRINUSE' ? 'the port is in use; pick another' : err.message}`));
    };
    server.once('error', onError);
    server.listen(listen.port, listen.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.warn({ err: errorText(err) }, 'http server error'));
  const a = server.address() as AddressInfo;
  const address = { host: a.address, port: a.port };
  log.info({ host: address.host, port: address.port }, 'http listening');
  return {
    address,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...SECURITY_HEADERS, ...extra });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: ServerResponse, status: number, doc: unknown): void {
  send(res, status, 'application/json; charset=utf-8', stringifyExactJson(doc) + '\n');
}

async function handle(observer: Observer, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain; charset=utf-8', 'only GET\n', { allow: 'GET, HEAD' });
    return;
  }
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  switch (path) {
    case '/metrics': {
      const m = await observer.metrics();
      send(res, 200, m.contentType, m.body);
      return;
    }
    case '/healthz':
      sendJson(res, 200, { ok: true });
      return;
    case '/readyz': {
      const r = await observer.readiness();
      sendJson(res, r.ready ? 200 : 503, r);
      return;
    }
    case '/api/state':
      sendJson(res, 200, await observer.state());
      return;
    case '/':
      send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML, {
        // Inline script and style only; nothing is fetched from elsewhere.
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
      });
      return;
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /metrics, /healthz, /readyz or /api/state\n');
  }
}
