// PostgreSQL for the scaled-out shape. `?schema=NAME` in the URL keeps a deployment (or a
// test run) in its own schema.

import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import type { Database as Schema } from '../schema.js';
import { SqlStore } from '../sql-store.js';

const INT8_OID = 20;
const NUMERIC_OID = 1700;

export async function openPostgresStore(url: string): Promise<SqlStore> {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get('schema');
  parsed.searchParams.delete('schema');
  if (schema && !/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name: ${schema}`);
  const connectionString = parsed.toString();
  if (schema) {
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } finally {
      await client.end();
    }
  }
  const pool = new pg.Pool({
    connectionString,
    max: 10,
    // A replica stopped inside a transaction (SIGSTOP, partition) would hold the write lock
    // and the leader lease's row lock until TCP gave up: the server ends such a session.
    options: `${schema ? `-c search_path=${schema} ` : ''}-c idle_in_transaction_session_timeout=2000`,
    // Counters and unix times fit in a JS number; pg would hand them over as strings.
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8_OID || oid === NUMERIC_OID ? Number : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // A session the server ended while the client was checked out (see above) reports it here;
  // without a listener that would crash the process. Its next query fails, and the pool drops it.
  pool.on('connect', (client) => client.on('error', () => undefined));
  pool.on('error', () => undefined);
  return new SqlStore('postgres', new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) }));
}
