/**
 * Free TCP ports for servers this process starts (throwaway clusters, private
 * test servers, the bench's HTTP endpoint).
 *
 * A port the kernel hands out with listen(0) comes from the ephemeral range,
 * the same range it draws the local ports of outgoing connections from. On a
 * busy machine an outgoing connection (to MariaDB, Redis, another cluster) can
 * take that port between our check and the server's bind, and the server then
 * dies with "Address already in use". So ports are drawn from below the
 * ephemeral range, where only explicit listeners go, and checked by binding.
 */
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';

/** The lowest port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 1024 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Whether nothing listens on 127.0.0.1:port right now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The kernel's choice, for when the range below the ephemeral one is too small or full. */
function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const LOWEST = 16384;

/** A port nobody listens on right now, outside the range outgoing connections use. */
export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  if (high - LOWEST >= 1000) {
    for (let tries = 0; tries < 50; tries++) {
      const port = LOWEST + Math.floor(Math.random() * (high - LOWEST + 1));
      if (await canBind(port)) return port;
    }
  }
  return kernelPort();
}
