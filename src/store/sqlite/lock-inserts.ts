// Lock create in a transaction of its own, straight on better-sqlite3: one compiled INSERT
// run per lock between BEGIN and COMMIT, all in one synchronous call. Through Kysely the
// same transaction is a connection mutex, BEGIN, INSERT … RETURNING and COMMIT, each one a
// compiled query and a few promise turns: about three quarters of a one-lock create's time.

import type BetterSqlite3 from 'better-sqlite3';
import { DroverError } from '../../model/errors.js';
import type { Lock, NewLock } from '../../model/lock.js';

const INSERT = 'INSERT INTO locks (orchestration_job_id, service_instance_id, owner, expires_at, temporary) VALUES (?, ?, ?, ?, ?)';

export class SqliteLockInserts {
  private insertAll?: (locks: NewLock[]) => Lock[];

  constructor(
    private readonly db: BetterSqlite3.Database,
    /** called before each transaction's commit */
    private readonly onCommit: () => void,
  ) {}

  /**
   * The created locks, in request order; fails with `exists` (having written nothing) when
   * an instance already has a lock row. Undefined when a transaction is open on the
   * connection: Kysely holds it across turns of the event loop, and a statement run now would
   * join it, so the caller queues behind it instead. With none open, nothing can interleave,
   * since this runs to COMMIT without yielding.
   */
  tryInsert(locks: NewLock[]): Lock[] | undefined {
    if (this.db.inTransaction) return undefined;
    try {
      this.onCommit();
      return this.compiled()(locks);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'SQLITE_CONSTRAINT_UNIQUE') throw new DroverError('exists', 'a service instance is already locked');
      throw e;
    }
  }

  /** Compiled on first use: the locks table exists only once the store has migrated. */
  private compiled(): (locks: NewLock[]) => Lock[] {
    if (this.insertAll) return this.insertAll;
    const insert = this.db.prepare(INSERT);
    // better-sqlite3's transaction(): BEGIN, the function, COMMIT; ROLLBACK when it throws
    this.insertAll = this.db.transaction((locks: NewLock[]) =>
      locks.map((l) => {
        const { lastInsertRowid } = insert.run(l.orchestrationJobId, l.serviceInstanceId, l.owner, l.expiresAt, l.temporary ? 1 : 0);
        const { orchestrationJobId, serviceInstanceId, owner, expiresAt, temporary } = l;
        return { id: Number(lastInsertRowid), orchestrationJobId, serviceInstanceId, owner, expiresAt, temporary };
      }),
    );
    return this.insertAll;
  }
}
