// SQLite in WAL mode on a real file: the embedded default.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, type SqliteStatement } from 'kysely';
import type { Database as Schema } from '../schema.js';
import { SqlStore } from '../sql-store.js';
import { withStatementCache } from './statement-cache.js';
import { BackgroundCheckpointer } from './checkpointer.js';
import { SqliteLockInserts } from './lock-inserts.js';

/** how long a statement waits for another connection's lock (SQLite sleeps in the calling thread meanwhile) */
const BUSY_TIMEOUT_MS = 5000;

/**
 * BEGIN IMMEDIATE that fails at once with SQLITE_BUSY while another connection holds the
 * write lock, instead of sleeping in SQLite's busy handler: that sleeps on the event loop's
 * thread, in steps of 1, 2 and 5 ms, while the checkpoint thread's RESTART holds the lock
 * for a millisecond or two (several times a second under a steady stream of writes). The
 * group commit waits for the lock on a timer instead (see group-commit.ts).
 */
function beginWithoutWaiting(db: BetterSqlite3.Database): SqliteStatement {
  const beginImmediate = db.prepare('begin immediate');
  const noWait = db.prepare('pragma busy_timeout = 0');
  const wait = db.prepare(`pragma busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const run = () => {
    noWait.get();
    try {
      return beginImmediate.run();
    } finally {
      wait.get();
    }
  };
  // Kysely runs it with run(); the other two ways answer as a BEGIN does, with no rows
  const noRows = () => (run(), []);
  return { reader: false, run, all: noRows, iterate: () => noRows()[Symbol.iterator]() };
}

export function openSqliteStore(path: string): SqlStore {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // WAL + NORMAL is durable across process crashes (only an OS crash can drop the last commits).
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // A 1 MB page cache instead of SQLite's 2 MB: a burst of writes (a thousand instances
  // starting) fills the default and keeps it; with 1 MB `drover serve` stays 4-5 MiB smaller
  // afterwards, and neither the desire path nor the 100k list got slower (docs/decisions.md).
  db.pragma('cache_size = -1000');
  const checkpointer = new BackgroundCheckpointer(path, db, (message) => process.emitWarning(message));
  const cached = withStatementCache(db, () => checkpointer.stop());
  const begin = beginWithoutWaiting(db);
  // Kysely begins and commits with statements of these texts: the checkpointer counts the
  // commits, and every transaction takes the write lock at BEGIN. A deferred one that read
  // first and then writes cannot wait for the lock (SQLite refuses at once: waiting could
  // deadlock), so the checkpoint thread's brief RESTART would fail a use case halfway; at
  // BEGIN the group commit waits and tries again (see group-commit.ts).
  const database = {
    prepare: (sql: string) => {
      if (sql === 'commit') checkpointer.committed();
      return sql === 'begin' ? begin : cached.prepare(sql);
    },
    close: () => cached.close(),
  };
  const query = (text: string, parameters: readonly unknown[]) => {
    const stmt = cached.prepare(text);
    if (stmt.reader) return { rows: stmt.all(parameters) };
    const { changes, lastInsertRowid } = stmt.run(parameters);
    return { rows: [], numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid) };
  };
  const readArrays = (sql: string, parameters: readonly unknown[]) => db.prepare(sql).raw().all(...parameters) as unknown[][];
  return new SqlStore('sqlite', new Kysely<Schema>({ dialect: new SqliteDialect({ database }) }), {
    query,
    inTransaction: () => db.inTransaction,
    readArrays,
    lockInserts: new SqliteLockInserts(db, () => checkpointer.committed()),
    threadsClosed: () => checkpointer.ended(),
  });
}
