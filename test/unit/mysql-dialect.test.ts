import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chunkSizes,
  createTableSql,
  deleteSql,
  mysqlType,
  progressUpsertSql,
  PROGRESS_ADD_EPOCH_SQL,
  PROGRESS_DDL,
  PROGRESS_FENCE_SQL,
  PROGRESS_HAS_EPOCH_SQL,
  PROGRESS_SELECT,
  quoteIdent,
  scanSql,
  textKeyChars,
  truncateSql,
  upsertSql,
} from '../../src/targets/mysql/mysql-dialect.js';
import { encodeMysql, isBinaryCollation, isNoPad, mappedLimits, Refusal } from '../../src/targets/mysql/mysql-target.js';
import type { TableSpec } from '../../src/targets/target.js';

const spec = (name: string, columns: [string, string][], keys: string[]): TableSpec => ({
  label: `public.${name}`, schema: 'public', name, targetName: name,
  columns: columns.map(([n, type]) => ({ name: n, type, notNull: keys.includes(n) })), keys,
});

const orders = spec('orders', [['id', 'bigint'], ['note', 'text'], ['total', 'numeric(10,2)']], ['id']);
const pair = spec('pair', [['a', 'integer'], ['b', 'text']], ['a', 'b']);

describe('mysql dialect', () => {
  it('quotes identifiers with backticks and refuses unusable names', () => {
    assert.equal(quoteIdent('plain'), '`plain`');
    assert.equal(quoteIdent('we`ird "name"'), '`we``ird "name"`');
    assert.throws(() => quoteIdent(''), /not a usable/);
    assert.throws(() => quoteIdent('a\0b'), /not a usable/);
    assert.throws(() => quoteIdent('trailing '), /not a usable/);
  });

  it('writes the MariaDB upsert with VALUES()', () => {
    assert.equal(
      upsertSql(orders, 2, 'mariadb'),
      'INSERT INTO `orders` (`id`, `note`, `total`) VALUES (?, ?, ?), (?, ?, ?) ON DUPLICATE KEY UPDATE `note` = VALUES(`note`), `total` = VALUES(`total`)',
    );
  });

  it('writes the MySQL 8.0.20+ upsert with a row alias', () => {
    assert.equal(
      upsertSql(orders, 2, 'mysql'),
      'INSERT INTO `orders` (`id`, `note`, `total`) VALUES (?, ?, ?), (?, ?, ?) AS `new` ON DUPLICATE KEY UPDATE `note` = `new`.`note`, `total` = `new`.`total`',
    );
  });

  it('updates the key to itself when every column is a key column (never REPLACE or IGNORE)', () => {
    const keysOnly = spec('k', [['a', 'integer'], ['b', 'integer']], ['a', 'b']);
    assert.equal(upsertSql(keysOnly, 1, 'mariadb'), 'INSERT INTO `k` (`a`, `b`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `a` = `a`');
    assert.equal(upsertSql(keysOnly, 1, 'mysql'), 'INSERT INTO `k` (`a`, `b`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `a` = `a`');
  });

  it('deletes by one key with IN and by a composite key with row constructors', () => {
    assert.equal(deleteSql(orders, 3), 'DELETE FROM `orders` WHERE `id` IN (?, ?, ?)');
    assert.equal(deleteSql(pair, 2), 'DELETE FROM `pair` WHERE (`a`, `b`) IN ((?, ?), (?, ?))');
  });

  it('scans by key, reading FLOAT as DOUBLE, and truncates with DELETE inside the transaction', () => {
    const f = spec('f', [['id', 'integer'], ['r', 'real'], ['d', 'double precision']], ['id']);
    assert.equal(scanSql(f), 'SELECT `id`, CAST(`r` AS DOUBLE), `d` FROM `f` ORDER BY `id`');
    assert.equal(truncateSql(f), 'DELETE FROM `f`');
  });

  it('writes the progress upsert for both flavors', () => {
    assert.equal(
      progressUpsertSql('mariadb'),
      'INSERT INTO `ibex_progress` (sync, source, snapshot, run, epoch, applied) VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE snapshot = VALUES(snapshot), run = VALUES(run), epoch = COALESCE(VALUES(epoch), epoch), applied = VALUES(applied)',
    );
    assert.equal(
      progressUpsertSql('mysql'),
      'INSERT INTO `ibex_progress` (sync, source, snapshot, run, epoch, applied) VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6)) AS `new` ON DUPLICATE KEY UPDATE snapshot = `new`.snapshot, run = `new`.run, epoch = COALESCE(`new`.epoch, `ibex_progress`.epoch), applied = `new`.applied',
    );
  });

  it('fences progress with the lease epoch: a locking read of the newest epoch, the column added to an older table', () => {
    assert.equal(PROGRESS_FENCE_SQL, 'SELECT COALESCE(MAX(epoch), 0) AS epoch FROM `ibex_progress` WHERE sync = ? FOR UPDATE');
    assert.equal(PROGRESS_DDL, 'CREATE TABLE IF NOT EXISTS `ibex_progress` (sync VARBINARY(512) NOT NULL, source VARBINARY(512) NOT NULL, ' +
      'snapshot LONGTEXT NOT NULL, run BIGINT NOT NULL, applied DATETIME(6) NOT NULL, epoch BIGINT NULL, PRIMARY KEY (sync, source)) ENGINE=InnoDB');
    assert.equal(PROGRESS_HAS_EPOCH_SQL, "SELECT COUNT(*) AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ibex_progress' AND COLUMN_NAME = 'epoch'");
    assert.equal(PROGRESS_ADD_EPOCH_SQL, 'ALTER TABLE `ibex_progress` ADD COLUMN epoch BIGINT NULL');
    assert.equal(PROGRESS_SELECT, "SELECT source, snapshot, run FROM `ibex_progress` WHERE sync = ? AND source <> '*' ORDER BY source");
  });

  it('maps PostgreSQL types as targets.md says', () => {
    const m = (t: string, key = false, f: 'mariadb' | 'mysql' = 'mariadb'): string => mysqlType(t, key, f);
    assert.equal(m('bigint'), 'BIGINT');
    assert.equal(m('integer'), 'INT');
    assert.equal(m('smallint'), 'SMALLINT');
    assert.equal(m('numeric(10,2)'), 'DECIMAL(10,2)');
    assert.equal(m('numeric'), 'DECIMAL(65,30)');
    assert.equal(m('numeric(70,2)'), 'DECIMAL(65,30)');
    assert.equal(m('double precision'), 'DOUBLE');
    assert.equal(m('real'), 'FLOAT');
    assert.equal(m('boolean'), 'TINYINT(1)');
    assert.equal(m('bytea'), 'LONGBLOB');
    assert.equal(m('jsonb'), 'JSON');
    assert.equal(m('text[]'), 'JSON');
    assert.equal(m('uuid'), 'CHAR(36) CHARACTER SET ascii COLLATE ascii_bin');
    assert.equal(m('timestamp with time zone'), 'DATETIME(6)');
    assert.equal(m('timestamp without time zone'), 'DATETIME(6)');
    assert.equal(m('date'), 'DATE');
    assert.equal(m('time without time zone'), 'TIME(6)');
    assert.equal(m('interval'), 'VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin');
    assert.equal(m('text'), 'LONGTEXT CHARACTER SET utf8mb4');
    assert.equal(m('character varying(20)'), 'VARCHAR(20) CHARACTER SET utf8mb4');
    assert.equal(m('text', true), 'VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin');
    assert.equal(m('text', true, 'mysql'), 'VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin');
    assert.equal(m('character(3)', true), 'CHAR(3) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin');
    assert.equal(m('public.mood'), 'LONGTEXT CHARACTER SET utf8mb4');
  });

  it('creates an InnoDB table whose text keys share the 3072-byte index limit', () => {
    assert.equal(
      createTableSql(pair, 'mariadb'),
      'CREATE TABLE `pair` (\n  `a` INT NOT NULL,\n  `b` VARCHAR(764) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,\n  PRIMARY KEY (`a`, `b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4',
    );
    assert.equal(textKeyChars(spec('two', [['a', 'text'], ['b', 'text']], ['a', 'b'])), 384);
    assert.equal(textKeyChars(orders), 768);
  });

  it('splits batches into full chunks and powers of two', () => {
    assert.deepEqual(chunkSizes(2500, 1024), [1024, 1024, 256, 128, 64, 4]);
    assert.deepEqual(chunkSizes(0, 1024), []);
    assert.deepEqual(chunkSizes(7, 1024), [4, 2, 1]);
  });
});

describe('mysql value encoding', () => {
  const lim = (t: string, key = false) => mappedLimits(t, key, 'mariadb');
  const enc = (t: string, v: string | null) => encodeMysql(t, v, lim(t));
  it('binds exact text for integers and decimals, UTC DATETIME text for timestamptz', () => {
    assert.equal(enc('bigint', '9223372036854775807'), '9223372036854775807');
    assert.equal(enc('numeric(10,2)', '1.50'), '1.5');
    assert.equal(enc('timestamp with time zone', '2026-12-04 20:26:00.123456+00'), '2026-12-04 20:26:00.123456');
    assert.equal(enc('timestamp with time zone', '2026-12-04 22:26:00+02'), '2026-12-04 20:26:00.000000');
    assert.equal(enc('boolean', 't'), 1);
    assert.deepEqual(enc('bytea', '\\x0102'), Buffer.from([1, 2]));
    assert.equal(enc('integer[]', '{1,NULL}'), '[1,null]');
    assert.equal(enc('interval', '1 day'), 'P1D');
    assert.equal(enc('text', null), null);
  });
  it('refuses what MariaDB cannot hold, with the reason', () => {
    const refused = (t: string, v: string): string => {
      const e = enc(t, v);
      assert.ok(e instanceof Refusal, `${t} ${v} should be refused`);
      return e.reason;
    };
    assert.match(refused('numeric', 'NaN'), /NaN has no DECIMAL form/);
    assert.match(refused('numeric', '1' + '0'.repeat(40)), /41 integer and 0 fraction digits; DECIMAL\(65,30\) holds 35 and 30/);
    assert.match(refused('numeric(10,2)', '1.234'), /DECIMAL\(10,2\)/);
    assert.match(refused('double precision', 'Infinity'), /cannot be stored in DOUBLE/);
    assert.match(refused('timestamp with time zone', 'infinity'), /no DATETIME form/);
    assert.match(refused('date', '0001-01-01 BC'), /outside DATE's years/);
    assert.match(refused('character varying(3)', 'abcd'), /4 characters do not fit varchar\(3\)/);
    assert.match(refused('bytea', 'nothex'), /hex format/);
  });
  it('refuses, for a MySQL JSON column only, json whose numbers MySQL would store as changed doubles', () => {
    const mysqlJson = (t: string) => mappedLimits(t, false, 'mysql');
    const refused = (t: string, v: string): string => {
      const e = encodeMysql(t, v, mysqlJson(t));
      assert.ok(e instanceof Refusal, `${t} ${v} should be refused`);
      return e.reason;
    };
    assert.match(refused('jsonb', '{"a": 1.00000000000000000001}'), /json number 1\.00000000000000000001 would be stored by MySQL's JSON type as the double 1; keep it as a JSON string on the source, or make the column LONGTEXT/);
    assert.match(refused('json', '[18446744073709551616]'), /json number 18446744073709551616 would be stored/);
    assert.match(refused('json', '{"x": "1.5", "y": [-9223372036854775809]}'), /-9223372036854775809/);
    assert.match(refused('numeric[]', '{1.5,0.12345678901234567890123}'), /0\.12345678901234567890123/);
    assert.match(refused('json', '{"a": 12345678901234567890.0}'), /12345678901234567890\.0 would be stored/, 'MySQL parses a number with a fraction as a double');
    // Exact: doubles that read back the same, integers of 64 bits (MySQL keeps those as integers), numbers inside strings.
    const text = '{"a": [0.1, 1e300, -2.5E-3, 9223372036854775807, 18446744073709551615, -9223372036854775808], "b": "1.00000000000000000001", "c\\"d": 3}';
    assert.equal(encodeMysql('jsonb', text, mysqlJson('jsonb')), text);
    assert.equal(encodeMysql('bigint[]', '{9223372036854775807}', mysqlJson('bigint[]')), '[9223372036854775807]');
    // MariaDB's JSON is LONGTEXT, and a MySQL column of another type does not parse: the text is kept exactly.
    assert.equal(enc('jsonb', '{"a": 1.00000000000000000001}'), '{"a": 1.00000000000000000001}');
    assert.equal(encodeMysql('jsonb', '[1e400]', { ...mysqlJson('jsonb'), dataType: 'longtext' }), '[1e400]');
  });
  it('counts characters, not UTF-16 units, against VARCHAR lengths', () => {
    assert.equal(encodeMysql('character varying(2)', '😀😀', lim('character varying(2)')), '😀😀');
  });
  it('tells binary and no-pad collations apart', () => {
    assert.ok(isBinaryCollation('utf8mb4_bin') && !isNoPad('utf8mb4_bin'));
    assert.ok(isBinaryCollation('utf8mb4_nopad_bin') && isNoPad('utf8mb4_nopad_bin'));
    assert.ok(isBinaryCollation('utf8mb4_0900_bin') && isNoPad('utf8mb4_0900_bin'));
    assert.ok(!isBinaryCollation('utf8mb4_general_ci'));
    assert.ok(isBinaryCollation('binary') && isNoPad('binary'));
  });
});
