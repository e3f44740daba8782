// Group commit for SQLite. A commit there costs more than a whole desire's statements (it
// writes every page the transaction touched to the WAL: about 150 of a desire's 400 µs of CPU),
// and SQLite runs one writer at a time anyway. So the transactions asked for while one group
// runs wait for the next turn of the event loop and then run together in one SQLite
// transaction. The members are answered only after the shared COMMIT, so an acknowledged
// transaction is durable, and a failed COMMIT fails them all with nothing written.
//
// A member that fails must fail alone. Each member could run in a savepoint of its own, but a
// savepoint copies every page the member changes (a desire's half-dozen) and costs about a
// tenth of the SQL a desire runs; members rarely fail. So the group runs without savepoints,
// and when a member fails, the transaction is rolled back and the group runs again with a
// savepoint per member: the failing one is rolled back to its savepoint, the others commit.
// A use case's work may therefore run twice; it keeps its effects inside its transaction
// (see Store.transaction).
//
// Every transaction begins IMMEDIATE (see sqlite/open.ts), so BEGIN is the only statement
// another connection's write lock can refuse (the checkpoint thread's RESTART holds it for a few
// milliseconds). A group whose BEGIN finds the database locked tries again a moment later,
// without blocking the event loop; its members never ran, so nothing repeats.

import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.js';

type Work = (trx: Transaction<Database>) => Promise<unknown>;
/** Runs a statement on the connection the group's transaction holds (see the constructor). */
type RunStatement = (query: CompiledQuery) => unknown;

interface Member {
  work: Work;
  resolve(value: unknown): void;
  reject(reason: unknown): void;
}

const SAVEPOINT = CompiledQuery.raw('SAVEPOINT use_case');
const RELEASE = CompiledQuery.raw('RELEASE use_case');
const ROLLBACK_TO = CompiledQuery.raw('ROLLBACK TO use_case');

/** how long a group keeps trying to BEGIN while the database is locked, as busy_timeout would */
const LOCKED_RETRY_MS = 5000;
/** short first: a RESTART checkpoint holds the lock a few ms (SQLite's own busy handler sleeps 1, 2, 5 ms) */
const LOCKED_PAUSE_MS = [1, 1, 1, 1, 2, 2, 5, 10, 20, 50];

function isLocked(e: unknown): boolean {
  return (e as { code?: string }).code?.startsWith('SQLITE_BUSY') === true;
}

export class GroupCommit {
  private queue: Member[] = [];
  /** a group is waiting for its turn or running */
  private busy = false;

  /**
   * `runStatement`: runs the savepoint statements straight on the connection. The group's
   * transaction holds it from BEGIN to COMMIT, so they need none of Kysely's per-statement
   * work (which costs more than the statements themselves).
   */
  constructor(
    private readonly kysely: Kysely<Database>,
    private readonly runStatement: RunStatement,
  ) {}

  run<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.busy || this.queue.length === 0) return;
    this.busy = true;
    // The requests that arrived in this turn of the event loop join the group.
    setImmediate(() => {
      const group = this.queue;
      this.queue = [];
      void this.commit(group).finally(() => {
        this.busy = false;
        this.schedule();
      });
    });
  }

  /** A transaction of `work`, begun again while BEGIN finds the database locked. */
  private async transaction(work: Work): Promise<unknown> {
    const deadline = performance.now() + LOCKED_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      let begun = false;
      try {
        return await this.kysely.transaction().execute((trx) => {
          begun = true;
          return work(trx);
        });
      } catch (e) {
        if (begun || !isLocked(e) || performance.now() > deadline) throw e;
      }
      const pause = LOCKED_PAUSE_MS[Math.min(attempt, LOCKED_PAUSE_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  private async commit(group: Member[]): Promise<void> {
    if (group.length === 1) {
      // alone: a plain transaction, no savepoint
      const [member] = group as [Member];
      await this.transaction(member.work).then(member.resolve, member.reject);
      return;
    }
    const values: unknown[] = [];
    let memberFailed = false;
    try {
      await this.transaction(async (trx) => {
        for (const member of group) {
          try {
            values.push(await member.work(trx));
          } catch (error) {
            memberFailed = true;
            throw error;
          }
        }
      });
    } catch (groupError) {
      // nothing was committed: a member's failure runs the group again, member by member
      if (memberFailed) return this.commitInSavepoints(group);
      for (const member of group) member.reject(groupError);
      return;
    }
    group.forEach((member, i) => member.resolve(values[i]));
  }

  /** The group in one transaction again, each member in a savepoint: one that fails fails alone. */
  private async commitInSavepoints(group: Member[]): Promise<void> {
    const outcomes: { member: Member; value?: unknown; error?: unknown; failed: boolean }[] = [];
    try {
      await this.transaction(async (trx) => {
        for (const member of group) {
          this.runStatement(SAVEPOINT);
          try {
            const value = await member.work(trx);
            this.runStatement(RELEASE);
            outcomes.push({ member, value, failed: false });
          } catch (error) {
            this.runStatement(ROLLBACK_TO);
            this.runStatement(RELEASE);
            outcomes.push({ member, error, failed: true });
          }
        }
      });
    } catch (groupError) {
      // nothing was committed: every member fails, with its own error if it had one
      const own = new Map(outcomes.filter((o) => o.failed).map((o) => [o.member, o.error]));
      for (const member of group) member.reject(own.has(member) ? own.get(member) : groupError);
      return;
    }
    for (const o of outcomes) {
      if (o.failed) o.member.reject(o.error);
      else o.member.resolve(o.value);
    }
  }
}
