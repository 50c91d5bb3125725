/**
 * The one way to get a Target: by kind, loading that kind's module (and so its driver) only
 * when a db of that kind is used, so a PostgreSQL-only installation never loads mysql2 or ioredis.
 */
import { IbexError } from '../errors.js';
import { TARGET_KIND_ALIASES, type Target, type TargetKind, type TargetParams } from './target.js';

/** What each kind's `<kind>-target.ts` exports. */
export interface TargetModule {
  createTarget(params: TargetParams): Target;
}

/** The folder of each kind under src/targets (MariaDB and MySQL share one dialect module). */
const FOLDER: Readonly<Record<TargetKind, string>> = {
  postgres: 'postgres', mariadb: 'mysql', mysql: 'mysql', sqlite: 'sqlite', redis: 'redis', mongo: 'mongo', oracle: 'oracle',
};

/** A `type=` word (Bucardo's spellings accepted) as a kind; undefined when unknown. */
export function targetKind(type: string): TargetKind | undefined {
  return TARGET_KIND_ALIASES[type.toLowerCase()];
}

/** Load the module of a kind. */
export async function loadTargetModule(kind: TargetKind): Promise<TargetModule> {
  const folder = FOLDER[kind];
  try {
    return (await import(`./${folder}/${folder}-target.js`)) as TargetModule;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`${folder}-target`)) {
      throw new IbexError('config', `targets of type ${kind} are not available in this build of ibex`);
    }
    throw err;
  }
}

/** A new, unconnected Target of any kind. */
export async function createTarget(params: TargetParams): Promise<Target> {
  return (await loadTargetModule(params.kind)).createTarget(params);
}

/**
 * The one factory of connected targets: loads `./<kind>/<kind>-target.js` (MariaDB and MySQL
 * share `mysql`), creates the target and connects it. A kind without its module fails with a
 * one-line IbexError('config').
 */
export async function openTarget(params: TargetParams): Promise<Target> {
  const t = await createTarget(params);
  await t.connect();
  return t;
}

/** A configured db as the control store describes it (structurally: targets do not import control). */
export interface ConfiguredDb {
  name: string;
  dbtype: string;
  params: { host?: string | undefined; port?: number | undefined; dbname?: string | undefined; user?: string | undefined; password?: string | undefined; conn?: string | undefined };
}

/** The TargetParams of a configured non-PostgreSQL db. */
export function targetParams(db: ConfiguredDb): TargetParams {
  const kind = targetKind(db.dbtype);
  if (!kind) throw new IbexError('config', `db ${db.name} has an unknown type "${db.dbtype}": use one of ${Object.keys(TARGET_KIND_ALIASES).join(', ')}`);
  const { host, port, dbname, user, password, conn } = db.params;
  return { name: db.name, kind, host, port, dbname, user, password, conn };
}

/** A connected Target for a configured non-PostgreSQL db. */
export async function connectTarget(db: ConfiguredDb): Promise<Target> {
  return openTarget(targetParams(db));
}
