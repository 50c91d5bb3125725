/**
 * Install and remove the capture objects of a sync on its source databases.
 * (Filled in by the capture work; the signatures are the contract the CLI uses.)
 */
import type pg from 'pg';

/** Options of an install or removal. */
export interface CaptureOptions {
  /** Report what would be done, change nothing. */
  dryRun?: boolean;
  /** Progress lines for the user. */
  say?: (line: string) => void;
}

/**
 * Install (or upgrade in place) capture for every table of `sync` on each of
 * its source dbs, then mark the sync active. On failure everything this call
 * installed is removed again and the error is thrown; the sync stays
 * `installing` (the caller removes the row when it was just added).
 */
export async function installCapture(_control: pg.Client, _sync: string, _opts: CaptureOptions = {}): Promise<void> {
  throw new Error('not implemented yet');
}

/** Remove what `installCapture` installed for `sync`, keeping objects other syncs still use. */
export async function removeCapture(_control: pg.Client, _sync: string, _opts: CaptureOptions = {}): Promise<void> {
  throw new Error('not implemented yet');
}
