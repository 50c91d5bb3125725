import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type mysql from 'mysql2/promise';
import { createTarget, type MysqlTarget } from '../../src/targets/mysql/mysql-target.js';
import type { TableSpec, Target, TextRow } from '../../src/targets/target.js';
import { adminConnection, freshDatabase, MYSQL_FAMILY_REFUSED, privateMariadb, type PrivateMariadb } from '../helpers/mariadb-server.js';
import { targetContract } from '../helpers/target-contract.js';

let db: { dbname: string; drop(): Promise<void> };
let admin: mysql.Connection;

before(async () => {
  db = await freshDatabase();
  admin = await adminConnection(3306, db.dbname);
});
after(async () => {
  await admin?.end();
  await db?.drop();
});

const mariadb = (dbname: string, port = 3306): Target =>
  createTarget({ name: 'maria', kind: 'mariadb', host: '127.0.0.1', port, user: 'root', dbname });

targetContract(
  'mariadb',
  async (tables) => {
    const target = mariadb(db.dbname);
    for (const t of tables) for (const s of target.createTableSql(t)) await admin.query(s);
    return { target, cleanup: async () => undefined };
  },
  { bulkRows: 70_000, refused: MYSQL_FAMILY_REFUSED },
);

const spec = (name: string, columns: [string, string][], keys: string[]): TableSpec => ({
  label: `public.${name}`, schema: 'public', name, targetName: name,
  columns: columns.map(([n, type]) => ({ name: n, type, notNull: keys.includes(n) })), keys,
});

describe('mariadb target: check()', () => {
  it('accepts what createTableSql makes, and refuses each unsafe layout in one line naming the risk and the fix', async () => {
    const target = mariadb(db.dbname);
    const good = spec('ck_good', [['id', 'text'], ['at', 'timestamp with time zone'], ['n', 'numeric(12,2)'], ['b', 'bytea']], ['id']);
    for (const s of target.createTableSql(good)) await admin.query(s);
    await admin.query('CREATE TABLE ck_nokey (id INT, v TEXT) ENGINE=InnoDB');
    await admin.query('CREATE TABLE ck_ci (k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY) ENGINE=InnoDB');
    await admin.query('CREATE TABLE ck_pad (k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY) ENGINE=InnoDB');
    await admin.query('CREATE TABLE ck_uniq (id INT PRIMARY KEY, email VARCHAR(50) COLLATE utf8mb4_nopad_bin UNIQUE) ENGINE=InnoDB');
    await admin.query('CREATE TABLE ck_myisam (id INT PRIMARY KEY) ENGINE=MyISAM');
    await admin.query('CREATE TABLE ck_ts (id INT PRIMARY KEY, at TIMESTAMP(6) NULL) ENGINE=InnoDB');
    await admin.query('CREATE TABLE ck_auto (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT) ENGINE=InnoDB');
    await admin.query('CREATE TABLE ck_prefix (k VARCHAR(100) COLLATE utf8mb4_nopad_bin, UNIQUE KEY kp (k(10))) ENGINE=InnoDB');
    try {
      await target.connect();
      assert.deepEqual(await target.check([good]), []);
      const problems = await target.check([
        spec('ck_absent', [['id', 'integer']], ['id']),
        spec('ck_good', [['id', 'text'], ['gone', 'integer']], ['id']),
        spec('ck_nokey', [['id', 'integer'], ['v', 'text']], ['id']),
        spec('ck_ci', [['k', 'text']], ['k']),
        spec('ck_pad', [['k', 'character varying(10)']], ['k']),
        spec('ck_uniq', [['id', 'integer'], ['email', 'text']], ['id']),
        spec('ck_myisam', [['id', 'integer']], ['id']),
        spec('ck_ts', [['id', 'integer'], ['at', 'timestamp with time zone']], ['id']),
        spec('ck_prefix', [['k', 'text']], ['k']),
      ]);
      const text = problems.map((p) => `${p.table}: ${p.message}`);
      const expect = [
        /^public\.ck_absent: table ck_absent is missing/,
        /^public\.ck_good: column gone is missing .* ADD `gone` INT$/,
        /^public\.ck_nokey: table ck_nokey has no PRIMARY KEY or unique key on exactly \(id\).*ADD PRIMARY KEY \(`id`\)$/,
        /^public\.ck_ci: key column ck_ci\.k .* collation utf8mb4_general_ci, under which different keys .* COLLATE utf8mb4_nopad_bin$/,
        /^public\.ck_pad: key column ck_pad\.k .* collation utf8mb4_bin, which ignores trailing blanks .* COLLATE utf8mb4_nopad_bin$/,
        /^public\.ck_uniq: table ck_uniq has unique key email \(email\) besides the key; ON DUPLICATE KEY UPDATE fires on any unique key/,
        /^public\.ck_myisam: table ck_myisam uses engine MyISAM, which has no transactions.*ENGINE=InnoDB$/,
        /^public\.ck_ts: column ck_ts\.at \(timestamp\(6\)\) is TIMESTAMP, which ends in 2038.*DATETIME\(6\)$/,
        /^public\.ck_prefix: table ck_prefix has no PRIMARY KEY or unique key on exactly \(k\)/,
        /^public\.ck_prefix: table ck_prefix has unique key kp \(k\) besides the key/,
      ];
      for (const re of expect) assert.ok(text.some((t) => re.test(t)), `expected ${re} in:\n${text.join('\n')}`);
      assert.equal(text.length, expect.length, text.join('\n'));
      for (const t of text) assert.ok(!t.includes('\n'), t);

      const autoSpec = spec('ck_auto', [['id', 'integer'], ['v', 'text']], ['id']);
      assert.deepEqual(await target.check([autoSpec]), [], 'ibex sessions set NO_AUTO_VALUE_ON_ZERO');
      await (target as unknown as MysqlTarget).sql("SET sql_mode = 'STRICT_ALL_TABLES'");
      const auto = await target.check([autoSpec]);
      assert.equal(auto.length, 1);
      assert.match(auto[0]?.message ?? '', /key column ck_auto\.id \(int\(11\)\) is AUTO_INCREMENT and the session lacks NO_AUTO_VALUE_ON_ZERO/);
      assert.match((await target.probe()).version, /^MariaDB 10\./);
    } finally {
      await target.close();
    }
  });

  it('refuses a column whose type cannot hold the source type, naming both types and the type to make it', async () => {
    const target = mariadb(db.dbname);
    const types: [string, string][] = [
      ['i2', 'smallint'], ['i4', 'integer'], ['i8', 'bigint'], ['n', 'numeric(12,2)'], ['f4', 'real'], ['f8', 'double precision'],
      ['b', 'boolean'], ['bl', 'bytea'], ['j', 'json'], ['jb', 'jsonb'], ['arr', 'integer[]'], ['u', 'uuid'],
      ['tz', 'timestamp with time zone'], ['ts', 'timestamp without time zone'], ['d', 'date'], ['tm', 'time without time zone'],
      ['ttz', 'time with time zone'], ['iv', 'interval'], ['t', 'text'], ['vc', 'character varying(20)'], ['c', 'character(3)'],
    ];
    const all = spec('ty_all', [['id', 'text'], ...types], ['id']);
    for (const s of target.createTableSql(all)) await admin.query(s);
    // Wider than what ibex makes, each still holding every value of its source type.
    await admin.query(`CREATE TABLE ty_wide (id BIGINT PRIMARY KEY, i2 INT, i4 BIGINT, i8 DECIMAL(30,0), f4 DOUBLE, b INT UNSIGNED,
      bl BLOB, u VARCHAR(100) CHARACTER SET utf8mb4, tm TIME(6), iv LONGTEXT CHARACTER SET utf8mb4, t MEDIUMTEXT CHARACTER SET utf8mb4) ENGINE=InnoDB`);
    await admin.query(`CREATE TABLE ty_bad (id INT PRIMARY KEY, big INT, small TINYINT, neg INT UNSIGNED, txt INT, bin TEXT, js INT,
      flag DATE, at VARCHAR(40), dbl FLOAT, pad BINARY(8), mood ENUM('a','b'), day DATETIME(6), few DECIMAL(12,2), clock TIME) ENGINE=InnoDB`);
    try {
      await target.connect();
      assert.deepEqual(await target.check([all]), []);
      assert.deepEqual(await target.check([spec('ty_wide', [['id', 'bigint'], ['i2', 'smallint'], ['i4', 'integer'], ['i8', 'bigint'],
        ['f4', 'real'], ['b', 'boolean'], ['bl', 'bytea'], ['u', 'uuid'], ['tm', 'time'], ['iv', 'interval'], ['t', 'text']], ['id'])]), []);
      const problems = await target.check([spec('ty_bad', [['id', 'integer'], ['big', 'bigint'], ['small', 'smallint'], ['neg', 'integer'],
        ['txt', 'text'], ['bin', 'bytea'], ['js', 'jsonb'], ['flag', 'boolean'], ['at', 'timestamp with time zone'], ['dbl', 'double precision'],
        ['pad', 'bytea'], ['mood', 'text'], ['day', 'date'], ['few', 'bigint'], ['clock', 'time without time zone']], ['id'])]);
      const text = problems.map((p) => `${p.table}: ${p.message}`);
      const expect = [
        /^public\.ty_bad: column ty_bad\.big \(int\(11\)\) cannot hold bigint: INT holds 4 bytes, bigint 8; make it BIGINT$/,
        /^public\.ty_bad: column ty_bad\.small \(tinyint\(4\)\) cannot hold smallint: TINYINT holds 1 bytes?, smallint 2; make it SMALLINT$/,
        /^public\.ty_bad: column ty_bad\.neg \(int\(10\) unsigned\) cannot hold integer: UNSIGNED has no negative values; make it INT$/,
        /^public\.ty_bad: column ty_bad\.txt \(int\(11\)\) cannot hold text: .*; make it LONGTEXT CHARACTER SET utf8mb4$/,
        /^public\.ty_bad: column ty_bad\.bin \(text\) cannot hold bytea: .*; make it LONGBLOB$/,
        /^public\.ty_bad: column ty_bad\.js \(int\(11\)\) cannot hold jsonb: .*; make it JSON$/,
        /^public\.ty_bad: column ty_bad\.flag \(date\) cannot hold boolean: .*; make it TINYINT\(1\)$/,
        /^public\.ty_bad: column ty_bad\.at \(varchar\(40\)\) cannot hold timestamp with time zone: .*; make it DATETIME\(6\)$/,
        /^public\.ty_bad: column ty_bad\.dbl \(float\) cannot hold double precision: .*; make it DOUBLE$/,
        /^public\.ty_bad: column ty_bad\.pad \(binary\(8\)\) cannot hold bytea: BINARY pads shorter values with zero bytes; make it LONGBLOB$/,
        /^public\.ty_bad: column ty_bad\.mood \(enum\('a','b'\)\) cannot hold text: .*; make it LONGTEXT CHARACTER SET utf8mb4$/,
        /^public\.ty_bad: column ty_bad\.day \(datetime\(6\)\) cannot hold date: .*; make it DATE$/,
        /^public\.ty_bad: column ty_bad\.few \(decimal\(12,2\)\) cannot hold bigint: DECIMAL\(12,2\) has 10 integer digits, bigint needs 19; make it BIGINT$/,
        /^public\.ty_bad: column ty_bad\.clock \(time\) rounds away microseconds of time without time zone; make it TIME\(6\)$/,
      ];
      for (const re of expect) assert.ok(text.some((t) => re.test(t)), `expected ${re} in:\n${text.join('\n')}`);
      assert.equal(text.length, expect.length, text.join('\n'));
    } finally {
      await target.close();
    }
  });

  it('refuses an integer beyond a column narrowed after add sync as a row, instead of failing the statement', async () => {
    const target = mariadb(db.dbname);
    await admin.query('CREATE TABLE narrowed (id BIGINT PRIMARY KEY, n INT, u SMALLINT UNSIGNED) ENGINE=InnoDB');
    const t = spec('narrowed', [['id', 'bigint'], ['n', 'bigint'], ['u', 'integer']], ['id']);
    try {
      await target.connect();
      await target.begin();
      const out = await target.upsertRows(t, [['1', '2147483647', '65535'], ['2', '2147483648', '0'], ['3', '-2147483648', '-1'], ['4', '-2147483649', '7']]);
      await target.commit();
      assert.deepEqual(out.refused.map((r) => r.key), [['2'], ['3'], ['4']]);
      assert.match(out.refused[0]?.reason ?? '', /^public\.narrowed on maria: column n \(bigint\): 2147483648 does not fit INT \(-2147483648 to 2147483647\); make it BIGINT$/);
      assert.match(out.refused[1]?.reason ?? '', /column u \(integer\): -1 does not fit SMALLINT UNSIGNED \(0 to 65535\); make it INT$/);
      assert.match(out.refused[2]?.reason ?? '', /column n \(bigint\): -2147483649 does not fit INT/);
      assert.equal(out.applied, 1);
      const rows: TextRow[] = [];
      for await (const r of target.scan(t)) rows.push(r);
      assert.deepEqual(rows, [['1', '2147483647', '65535']]);
    } finally {
      await target.close();
    }
  });

  it('refuses to serve kind mysql on a MariaDB server', async () => {
    const t = createTarget({ name: 'my', kind: 'mysql', host: '127.0.0.1', port: 3306, user: 'root', dbname: db.dbname });
    await assert.rejects(t.connect(), /is MariaDB .* declare the db with type=mariadb/);
    await t.close();
  });

  it('refuses a value that does not fit the existing column instead of letting the server cut or round it', async () => {
    const target = mariadb(db.dbname);
    await admin.query('CREATE TABLE fit (id INT PRIMARY KEY, s VARCHAR(5) COLLATE utf8mb4_nopad_bin, n DECIMAL(5,2)) ENGINE=InnoDB');
    const t = spec('fit', [['id', 'integer'], ['s', 'text'], ['n', 'numeric']], ['id']);
    try {
      await target.connect();
      await target.begin();
      const out = await target.upsertRows(t, [['1', 'short', '999.99'], ['2', 'toolongvalue', '1'], ['3', 'ok', '1.005'], ['4', '😀😀😀😀😀', '1000']]);
      await target.commit();
      assert.equal(out.applied, 1);
      assert.deepEqual(out.refused.map((r) => r.key), [['2'], ['3'], ['4']]);
      assert.match(out.refused[0]?.reason ?? '', /column s \(text\): 12 characters do not fit varchar\(5\)/);
      assert.match(out.refused[1]?.reason ?? '', /column n \(numeric\): 1\.005 has 1 integer and 3 fraction digits; DECIMAL\(5,2\)/);
      assert.match(out.refused[2]?.reason ?? '', /column n \(numeric\): 1000 has 4 integer/);
      const rows: TextRow[] = [];
      for await (const r of target.scan(t)) rows.push(r);
      assert.deepEqual(rows, [['1', 'short', '999.99']]);
    } finally {
      await target.close();
    }
  });
});

describe('mariadb target: statements sent ahead of their answers', () => {
  it('fails the call when a statement the server refuses was followed by one already sent, and the rollback leaves none of it', async () => {
    const target = mariadb(db.dbname);
    await admin.query('CREATE TABLE ahead (id INT PRIMARY KEY, v INT, CONSTRAINT no13 CHECK (v <> 13)) ENGINE=InnoDB');
    const t = spec('ahead', [['id', 'integer'], ['v', 'integer']], ['id']);
    // 1,700 rows: four statements; the refused value in the first, then in the last.
    const rows = (bad: number): TextRow[] => Array.from({ length: 1700 }, (_, i) => [String(i), i === bad ? '13' : '1']);
    try {
      await target.connect();
      for (const bad of [10, 1690]) {
        await target.begin();
        await assert.rejects(target.upsertRows(t, rows(bad)), /no13/);
        await target.rollback();
        const [n] = (await admin.query('SELECT count(*) AS n FROM ahead')) as unknown as [{ n: number }[]];
        assert.equal(Number(n[0]?.n), 0, `refused row ${bad}`);
      }
      await target.begin();
      assert.equal((await target.upsertRows(t, rows(-1))).applied, 1700);
      await target.commit();
      const [n] = (await admin.query('SELECT count(*) AS n, sum(v) AS s FROM ahead')) as unknown as [{ n: number; s: string }[]];
      assert.deepEqual([Number(n[0]?.n), Number(n[0]?.s)], [1700, 1700]);
    } finally {
      await target.close();
    }
  });
});

describe('mariadb target: a deadlock while a statement waits behind another', () => {
  it('leaves nothing of the run, not even the statement already sent behind the one chosen as the victim', async () => {
    const target = mariadb(db.dbname);
    await admin.query('CREATE TABLE dl (id INT PRIMARY KEY, v INT) ENGINE=InnoDB');
    await admin.query('INSERT INTO dl SELECT seq, 0 FROM seq_1_to_400');
    const t = spec('dl', [['id', 'integer'], ['v', 'integer']], ['id']);
    const other = await adminConnection(3306, db.dbname);
    try {
      await target.connect();
      // The other writer holds 300 rows (id 2 among them): InnoDB picks the lighter run as the victim.
      await other.query('START TRANSACTION');
      await other.query('UPDATE dl SET v = 1 WHERE id BETWEEN 2 AND 301');
      await target.begin();
      await target.upsertRows(t, [['1', '5']]);
      // Two statements of 500 rows: the first waits on id 2, the second (new ids) is queued behind it.
      const rows: TextRow[] = [['2', '7'], ...Array.from({ length: 999 }, (_, i): TextRow => [String(1000 + i), '9'])];
      const apply = target.upsertRows(t, rows);
      apply.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const closing = other.query('UPDATE dl SET v = 2 WHERE id = 1');
      await assert.rejects(apply, /deadlock/i);
      await closing;
      await other.query('COMMIT');
      await target.rollback();
      const [n] = (await admin.query('SELECT count(*) AS n FROM dl WHERE id >= 1000')) as unknown as [{ n: number }[]];
      assert.equal(Number(n[0]?.n), 0, 'rows of the run committed on their own');
      const [one] = (await admin.query('SELECT v FROM dl WHERE id = 1')) as unknown as [{ v: number }[]];
      assert.equal(Number(one[0]?.v), 2);
      // The session is usable again, with autocommit back on after the run.
      await target.begin();
      assert.equal((await target.upsertRows(t, rows)).applied, 1000);
      await target.commit();
      const [m] = (await admin.query('SELECT count(*) AS n FROM dl WHERE id >= 1000')) as unknown as [{ n: number }[]];
      assert.equal(Number(m[0]?.n), 999);
    } finally {
      await other.end().catch(() => {});
      await target.close();
    }
  });
});

describe('mariadb target: the silent-corruption cases stay apart', () => {
  it('keeps keys differing only in case or trailing blanks as separate rows, and a key 0 in an AUTO_INCREMENT column as 0', async () => {
    const target = mariadb(db.dbname);
    const t = spec('apart', [['k', 'text'], ['v', 'integer']], ['k']);
    for (const s of target.createTableSql(t)) await admin.query(s);
    await admin.query('CREATE TABLE apart_auto (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT) ENGINE=InnoDB');
    const auto = spec('apart_auto', [['id', 'integer'], ['v', 'text']], ['id']);
    try {
      await target.connect();
      await target.begin();
      await target.upsertRows(t, [['abc', '1'], ['ABC', '2'], ['x', '3'], ['x ', '4'], ['x  ', '5']]);
      await target.upsertRows(auto, [['5', 'five'], ['0', 'zero']]);
      await target.commit();
      const rows: TextRow[] = [];
      for await (const r of target.scan(t)) rows.push(r);
      assert.deepEqual(rows.map((r) => r.join('=')).sort(), ['ABC=2', 'abc=1', 'x=3', 'x =4', 'x  =5'].sort());
      const autoRows: TextRow[] = [];
      for await (const r of target.scan(auto)) autoRows.push(r);
      assert.deepEqual(autoRows, [['0', 'zero'], ['5', 'five']]);
    } finally {
      await target.close();
    }
  });
});

describe('mariadb target: server killed mid-run', () => {
  let srv: PrivateMariadb;
  before(async () => {
    srv = await privateMariadb();
    await srv.start();
  });
  after(async () => {
    await srv?.destroy();
  });

  it('after SIGKILL and restart neither data nor progress of the open run remain, and the re-run applies once', async () => {
    const c = await adminConnection(srv.port);
    await c.query('CREATE DATABASE crashdb CHARACTER SET utf8mb4');
    await c.end();
    const t = spec('crashy', [['k', 'integer'], ['v', 'text']], ['k']);
    const first = mariadb('crashdb', srv.port);
    await first.connect();
    const a = await adminConnection(srv.port, 'crashdb');
    for (const s of first.createTableSql(t)) await a.query(s);
    await a.end();

    await first.begin();
    await first.upsertRows(t, [['1', 'one'], ['2', 'two']]);
    await first.writeProgress('s1', [{ source: 'A', snapshot: '1:1:', run: 1 }]);
    await first.commit();

    const rows: TextRow[] = Array.from({ length: 5000 }, (_, i) => [String(i + 100), `run two ${i}`]);
    await first.begin();
    await first.upsertRows(t, rows);
    await first.deleteKeys(t, [['1']]);
    await first.writeProgress('s1', [{ source: 'A', snapshot: '2:2:', run: 2 }]);
    await srv.kill();
    await first.rollback();
    await srv.start();

    // The same target object reconnects: its dead session is noticed and replaced.
    const second = first;
    try {
      await second.connect();
      const seen: TextRow[] = [];
      for await (const r of second.scan(t)) seen.push(r);
      assert.deepEqual(seen, [['1', 'one'], ['2', 'two']]);
      await second.begin();
      assert.deepEqual(await second.readProgress('s1'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      await second.rollback();

      for (let i = 0; i < 2; i++) {
        await second.begin();
        const done = await second.readProgress('s1');
        assert.ok(done !== 'missing');
        if (done.some((p) => p.run === 2)) {
          await second.rollback();
          continue;
        }
        await second.upsertRows(t, rows);
        await second.deleteKeys(t, [['1']]);
        await second.writeProgress('s1', [{ source: 'A', snapshot: '2:2:', run: 2 }]);
        await second.commit();
      }
      const after: TextRow[] = [];
      for await (const r of second.scan(t)) after.push(r);
      assert.equal(after.length, 5001);
      assert.deepEqual(after[0], ['2', 'two']);
      await second.begin();
      assert.deepEqual(await second.readProgress('s1'), [{ source: 'A', snapshot: '2:2:', run: 2 }]);
      await second.rollback();
    } finally {
      await second.close();
    }
  });

  it('after a rollback that failed on a killed server, the next use connects afresh (kill and restart, ten times)', async () => {
    const t = spec('crashy', [['k', 'integer'], ['v', 'text']], ['k']);
    const target = mariadb('crashdb', srv.port);
    try {
      await target.connect();
      for (let i = 0; i < 10; i++) {
        await target.begin();
        await target.upsertRows(t, [['7', `try ${i}`], ...Array.from({ length: 2000 }, (_, j): TextRow => [String(1000 + j), 'x'])]);
        await srv.kill();
        await target.rollback();
        await srv.start();
        // Before: the failed ROLLBACK left the dead session trusted, and the scan waited on it for ever.
        await target.connect();
        const seen: TextRow[] = [];
        for await (const r of target.scan(t)) seen.push(r);
        assert.ok(!seen.some((r) => r[0] === '7'), `attempt ${i}: the killed run left a row`);
      }
    } finally {
      await target.close();
    }
  });
});
