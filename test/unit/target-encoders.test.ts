import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMysql, mappedLimits, mysqlEncoder, Refusal as MysqlRefusal, type ColumnLimits } from '../../src/targets/mysql/mysql-target.js';
import { encodeSqlite, sqliteEncoder } from '../../src/targets/sqlite/sqlite-target.js';
import { rng, testSeed } from '../helpers/seed.js';

/** Texts of each type: what PostgreSQL prints, and what it never does but a value could look like. */
const AWKWARD: Record<string, string[]> = {
  bigint: ['0', '-0', '1', '-1', '007', '+5', ' 5', '9223372036854775807', '-9223372036854775808', '99999999999999999999', '1.5', 'x', ''],
  'numeric(5,2)': ['0', '-0.00', '999.99', '1000', '1.005', '123.40', '.5', '5.', '-.5', 'NaN', 'Infinity', '1e3', '+1', ' 1', '.', ''],
  numeric: ['0.000000000000000000000000000001', '1' + '0'.repeat(40), '-12345.678900', '0.10', 'NaN', '-Infinity', '1.2.3'],
  'timestamp with time zone': ['2026-12-04 23:30:00.5+00', '2026-12-04 23:30:00+00', '2024-02-29 12:00:00.123456+00', '2023-02-29 00:00:00+00',
    '0001-01-01 00:00:00+00', '0000-06-01 00:00:00+00', '9999-12-31 23:59:59.999999+00', '2026-01-01 24:00:00+00', '2026-01-01 23:59:60+00',
    '2026-01-01 00:00:00+05:30', '0044-03-15 00:00:00+00 BC', 'infinity', '-infinity', '12026-01-01 00:00:00+00', '2026-01-01 00:00:00.1234567+00', 'x'],
  text: ['', 'plain', ' blanks ', '😀😀😀😀😀', 'toolongvalue', '\u0000nul', 'a'.repeat(300)],
  'character varying(5)': ['short', 'toolongvalue', '😀😀😀😀😀', 'ab'],
};

const LIMITS: Record<string, ColumnLimits[]> = {
  bigint: [mappedLimits('bigint', true, 'mariadb')],
  'numeric(5,2)': [mappedLimits('numeric(5,2)', false, 'mariadb'), { dataType: 'decimal', maxChars: null, maxBytes: null, precision: 3, scale: 1 }],
  numeric: [mappedLimits('numeric', false, 'mariadb')],
  'timestamp with time zone': [mappedLimits('timestamp with time zone', false, 'mariadb')],
  text: [mappedLimits('text', false, 'mariadb'), { dataType: 'varchar', maxChars: 5, maxBytes: 20, precision: null, scale: null }],
  'character varying(5)': [mappedLimits('character varying(5)', false, 'mariadb'), { dataType: 'varchar', maxChars: 5, maxBytes: 8, precision: null, scale: null }],
};

const same = (a: unknown, b: unknown, what: string): void => {
  if (a instanceof MysqlRefusal || (typeof a === 'object' && a !== null && 'reason' in a)) {
    assert.equal((a as { reason: string }).reason, (b as { reason?: string }).reason, what);
  } else {
    assert.deepEqual(a, b, what);
  }
};

describe('per-column encoders', () => {
  const seed = testSeed();
  const r = rng(seed);
  const two = (n: number): string => String(n).padStart(2, '0');
  /** Random texts near the fast forms: digits, signs, points, clock texts with fields out of range. */
  const random = (type: string): string => {
    if (type === 'timestamp with time zone') {
      return `${String(r.int(0, 9999)).padStart(4, '0')}-${two(r.int(0, 13))}-${two(r.int(0, 31))} ${two(r.int(0, 24))}:${two(r.int(0, 60))}:${two(r.int(0, 60))}`
        + (r.next() < 0.5 ? '.' + String(r.int(0, 999999)).slice(0, r.int(1, 6)) : '') + '+00';
    }
    const chars = type === 'bigint' ? '-0123456789' : type.startsWith('numeric') ? '-0123456789.' : 'ab😀 ';
    return Array.from({ length: r.int(1, 8) }, () => chars[r.int(0, chars.length - 1)]).join('');
  };
  it(`give what encodeSqlite and encodeMysql give, for awkward and random texts (seed ${seed})`, () => {
    for (const [type, texts] of Object.entries(AWKWARD)) {
      const all = [...texts, ...Array.from({ length: 3000 }, () => random(type))];
      const sqlite = sqliteEncoder(type);
      for (const t of all) same(sqlite(t), encodeSqlite(type, t), `sqlite ${type} ${JSON.stringify(t)}`);
      for (const limits of LIMITS[type] ?? []) {
        const mysql = mysqlEncoder(type, limits);
        for (const t of all) same(mysql(t), encodeMysql(type, t, limits), `mysql ${type} ${JSON.stringify(t)} ${JSON.stringify(limits)}`);
      }
    }
  });
});
