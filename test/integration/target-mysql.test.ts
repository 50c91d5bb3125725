/**
 * The contract against a real MySQL ≥ 8.0.20, only when IBEX_TEST_MYSQL_URL
 * (mysql://user:password@host:port/anydb) names one: this machine has no MySQL server, so
 * kind 'mysql' is otherwise checked by the exact-SQL unit tests alone.
 */
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { createTarget } from '../../src/targets/mysql/mysql-target.js';
import { MYSQL_FAMILY_REFUSED } from '../helpers/mariadb-server.js';
import { targetContract } from '../helpers/target-contract.js';

const url = process.env.IBEX_TEST_MYSQL_URL;

if (url === undefined || url === '') {
  describe('mysql target (MySQL 8)', () => {
    it('runs the target contract against MySQL 8', { skip: 'IBEX_TEST_MYSQL_URL is not set: no MySQL 8 server here (apt has none; see targets.md)' }, () => undefined);
  });
} else {
  const u = new URL(url);
  const server = {
    host: u.hostname,
    port: u.port === '' ? 3306 : Number(u.port),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  };
  const dbname = `ibex_t_${randomBytes(6).toString('hex')}`;
  let admin: mysql.Connection;
  before(async () => {
    const c = await mysql.createConnection({ ...server, charset: 'utf8mb4' });
    await c.query(`CREATE DATABASE \`${dbname}\` CHARACTER SET utf8mb4`);
    await c.end();
    admin = await mysql.createConnection({ ...server, database: dbname, charset: 'utf8mb4' });
  });
  after(async () => {
    await admin?.query(`DROP DATABASE IF EXISTS \`${dbname}\``);
    await admin?.end();
  });
  targetContract(
    'mysql',
    async (tables) => {
      const target = createTarget({ name: 'my', kind: 'mysql', ...server, dbname });
      for (const t of tables) for (const s of target.createTableSql(t)) await admin.query(s);
      return { target, cleanup: async () => undefined };
    },
    { bulkRows: 70_000, refused: MYSQL_FAMILY_REFUSED },
  );
}
