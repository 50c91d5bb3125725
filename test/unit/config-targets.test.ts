import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { postgresCreateTable } from '../../src/config/schema.js';
import { checkDbParams, targetParams } from '../../src/config/targets.js';
import type { DbRecord } from '../../src/control/config-store.js';
import { IbexError } from '../../src/errors.js';

function db(over: Partial<DbRecord>): DbRecord {
  return {
    name: 'X', dbtype: 'postgres', host: null, port: null, dbname: null, dbuser: null, dbpass: null, dbpass_ref: null, conn: null, service: null,
    status: 'active', server_version: null, encoding: null, is_superuser: null, can_replica: null, about: null, ...over,
  };
}

describe('the CREATE TABLE of a PostgreSQL db', () => {
  it('quotes every name and keeps the source types, NOT NULL and the key in order', () => {
    assert.equal(postgresCreateTable({
      label: 'public."Odd ""T"""', schema: 'My Schema', name: 'Odd "T"', targetName: 'Odd "T"',
      columns: [{ name: 'Id', type: 'bigint', notNull: true }, { name: 'b', type: 'text[]', notNull: false }, { name: 'a', type: 'numeric(10,2)', notNull: true }],
      keys: ['a', 'Id'],
    }), 'CREATE TABLE "My Schema"."Odd ""T""" (\n  "Id" bigint NOT NULL,\n  "b" text[],\n  "a" numeric(10,2) NOT NULL,\n  PRIMARY KEY ("a", "Id")\n)');
  });
  it('has no PRIMARY KEY for a table without a key (fullcopy only)', () => {
    assert.equal(postgresCreateTable({ label: 'public.t', schema: 'public', name: 't', targetName: 't', columns: [{ name: 'x', type: 'integer', notNull: false }], keys: [] }),
      'CREATE TABLE "public"."t" (\n  "x" integer\n)');
  });
});

describe('the options of each type of db', () => {
  const refused = (over: Partial<DbRecord>, re: RegExp): void => {
    assert.throws(() => checkDbParams(db(over)), (err: unknown) => err instanceof IbexError && err.code === 'usage' && re.test(err.message));
  };
  it('accepts what each type needs', () => {
    checkDbParams(db({ dbtype: 'mariadb', dbname: 'd', host: 'h', dbuser: 'u', dbpass: 'p', port: 3306 }));
    checkDbParams(db({ dbtype: 'sqlite', dbname: '/var/lib/x.db' }));
    checkDbParams(db({ dbtype: 'redis', host: 'h' }));
    checkDbParams(db({ dbtype: 'redis', host: 'h', dbname: '15' }));
    // Past 15 too: a server's databases setting may give it more; the connection test says when not.
    checkDbParams(db({ dbtype: 'redis', host: 'h', dbname: '16' }));
    checkDbParams(db({ dbtype: 'redis', host: 'h', dbname: '2147483647' }));
    checkDbParams(db({ dbtype: 'mongo', conn: 'mongodb+srv://c.example', dbname: 'd' }));
    checkDbParams(db({ dbtype: 'oracle', conn: '//h:1521/svc', dbuser: 'u' }));
    checkDbParams(db({ dbtype: 'oracle', host: 'h', dbname: 'svc', dbuser: 'u' }));
  });
  it('refuses what a type has no use for, and what it lacks', () => {
    refused({ dbtype: 'sqlite', dbname: 'x.db', dbpass: 'p' }, /^pass= has no meaning for a sqlite db/);
    const notNumber = (v: string): RegExp => new RegExp(`^dbname= of a redis db is its logical database number \\(0 or more; the server refuses one past its databases setting, 16 by default\\), not "${v}": ibex add db X type=redis host= \\[port=\\] \\[dbname=<number>\\]`);
    for (const v of ['-1', 'app', '1.5', '2147483648']) refused({ dbtype: 'redis', host: 'h', dbname: v }, notNumber(v));
    refused({ dbtype: 'redis', dbname: '0' }, /^a redis db needs host=<host>: ibex add db X type=redis host=/);
    refused({ dbtype: 'oracle', conn: '//h/svc', dbname: 'svc', dbuser: 'u' }, /conn= and host=\/port=\/dbname= given together for oracle db X/);
    refused({ dbtype: 'mysql', host: 'h', dbuser: 'u' }, /^a mysql db needs dbname=<database>: ibex add db X type=mysql/);
  });
  it('gives a target every connection option, the password included', () => {
    assert.deepEqual(targetParams(db({ dbtype: 'redis', host: 'h', port: 6380, dbname: '2', dbpass: 'pw' })),
      { name: 'X', kind: 'redis', host: 'h', port: 6380, dbname: '2', user: undefined, password: 'pw', conn: undefined });
  });
});
