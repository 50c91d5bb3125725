import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ident, literal, objectName, qualified, MAX_IDENT_BYTES } from '../../src/db/ident.js';
import { sql } from '../../src/db/sql.js';
import { redact, parseUrl } from '../../src/db/connect.js';
import { IbexError, ExitCode } from '../../src/errors.js';

describe('identifier quoting', () => {
  it('doubles quotes and keeps case and spaces', () => {
    assert.equal(ident('My "odd" Table').text, '"My ""odd"" Table"');
    assert.equal(qualified('Sch ema', 't').text, '"Sch ema"."t"');
  });
  it('refuses empty names and NUL bytes', () => {
    assert.throws(() => ident(''), IbexError);
    assert.throws(() => ident('a\0b'), IbexError);
  });
  it('puts values in parameters and identifiers in the text', () => {
    const q = sql`SELECT * FROM ${ident('t"x')} WHERE a = ${"O'Brien"} AND b = ${2}`;
    assert.equal(q.text, 'SELECT * FROM "t""x" WHERE a = $1 AND b = $2');
    assert.deepEqual(q.values, ["O'Brien", 2]);
  });

  it('quotes a value as a string literal where SQL text must carry it, refusing NUL bytes', () => {
    assert.equal(literal(`O'Brien \\ 'x'`), `'O''Brien \\ ''x'''`);
    assert.throws(() => literal('a\0b'), /NUL byte/);
  });
});

describe('generated object names', () => {
  it('keeps short names as they are', () => {
    assert.equal(objectName('delta', 'public', 't1'), 'delta_public_t1');
  });
  it('stays within 63 bytes, also for multi-byte names, and keeps long names apart', () => {
    const long = 'ü'.repeat(60);
    const a = objectName('delta', 'public', long + 'a');
    const b = objectName('delta', 'public', long + 'b');
    assert.ok(Buffer.byteLength(a) <= MAX_IDENT_BYTES, a);
    assert.ok(Buffer.byteLength(b) <= MAX_IDENT_BYTES, b);
    assert.notEqual(a, b);
  });
});

describe('secrets and errors', () => {
  it('redacts passwords in URLs and key=value text', () => {
    assert.equal(redact('postgresql://bob:s3cret@h/db'), 'postgresql://bob:********@h/db');
    assert.equal(redact("host=h password=s3cret dbname=x"), 'host=h password=******** dbname=x');
    assert.equal(redact('failed for hunter2', 'hunter2'), 'failed for ********');
  });
  it('parses libpq URLs with a socket host', () => {
    const p = parseUrl('postgresql://postgres@/ibex?host=/tmp/sock&sslmode=disable');
    assert.equal(p.host, '/tmp/sock');
    assert.equal(p.dbname, 'ibex');
    assert.equal(p.conn, "sslmode='disable'");
  });
  it('maps error codes to the documented exit codes', () => {
    assert.equal(new IbexError('usage', 'x').exitCode, ExitCode.usage);
    assert.equal(new IbexError('not_found', 'x').exitCode, ExitCode.usage);
    assert.equal(new IbexError('unreachable', 'x').exitCode, ExitCode.runtime);
    assert.equal(new IbexError('conflict_abort', 'x').exitCode, 3);
    assert.equal(new IbexError('kick_timeout', 'x').exitCode, 4);
    assert.equal(new IbexError('run_failed', 'x').exitCode, 5);
    assert.equal(new IbexError('differences', 'x').exitCode, 6);
  });
});
