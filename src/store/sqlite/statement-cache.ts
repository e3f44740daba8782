// better-sqlite3 compiles a statement on every prepare(); Kysely prepares every query it
// runs. The store issues a few dozen distinct SQL texts over and over, so keeping the
// compiled statements by text saves a compile per statement (about a fifth of a desire's CPU).

import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/** Enough for every fixed query; texts that vary (IN lists of any length) push out the least used. */
const MAX_STATEMENTS = 256;

interface Entry {
  stmt: SqliteStatement;
  /** used since the eviction scan last passed it */
  used: boolean;
}

/**
 * `beforeClose` runs first when Kysely closes the database.
 * Eviction is second chance (CLOCK): a hit only marks its entry, where moving it to the end of
 * the map on every hit (exact LRU) cost a map delete and insert per statement run.
 */
export function withStatementCache(db: BetterSqlite3.Database, beforeClose: () => void): SqliteDatabase {
  const statements = new Map<string, Entry>();
  const evictOne = () => {
    // oldest first; one used since the last scan goes to the end instead, unmarked
    for (const [sql, entry] of statements) {
      statements.delete(sql);
      if (!entry.used) return;
      entry.used = false;
      statements.set(sql, entry);
    }
  };
  return {
    prepare(sql: string): SqliteStatement {
      const hit = statements.get(sql);
      if (hit) {
        hit.used = true;
        return hit.stmt;
      }
      const stmt = db.prepare(sql) as SqliteStatement;
      if (statements.size >= MAX_STATEMENTS) evictOne();
      statements.set(sql, { stmt, used: false });
      return stmt;
    },
    close(): void {
      beforeClose();
      statements.clear();
      db.close();
    },
  };
}
