/**
 * The contract between the daemon (scheduling, leases, wake-ups) and the
 * runner (one run of one sync). The run outcome types are shared with the
 * control store, so they live in src/model.ts.
 */
export type { RunKind, RunResult, TableCounts } from '../model.js';
