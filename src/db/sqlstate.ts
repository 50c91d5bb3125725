/**
 * Database errors are data: branch on SQLSTATE, never on message text.
 */

/** The SQLSTATE of a driver error, if it has one. */
export function sqlstate(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    const code = (err as { code: string }).code;
    if (/^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

const NODE_NET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENOENT']);

/** True for a lost or refused connection (driver or network level). */
export function isConnectionError(err: unknown): boolean {
  const state = sqlstate(err);
  if (state?.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03') return true;
  if (err && typeof err === 'object' && 'code' in err && NODE_NET_CODES.has(String((err as { code: unknown }).code))) return true;
  const msg = err instanceof Error ? err.message : '';
  return /Connection terminated|connection is closed|Client has encountered a connection error|timeout expired/i.test(msg);
}

/**
 * Transient failures are retried with backoff (DESIGN invariant 6):
 * connection problems, serialization failures, deadlocks, lock timeouts,
 * admin shutdown.
 */
export function isTransient(err: unknown): boolean {
  const state = sqlstate(err);
  if (state === '40001' || state === '40P01' || state === '55P03' || state === '57014') return true;
  return isConnectionError(err);
}

/** SQLSTATEs named for readability. */
export const SqlState = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  serializationFailure: '40001',
  deadlock: '40P01',
  lockNotAvailable: '55P03',
  undefinedTable: '42P01',
  undefinedObject: '42704',
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  duplicateObject: '42710',
} as const;
