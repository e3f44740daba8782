import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import pino from 'pino';
import { BackgroundCheckpointer } from '../src/store/sqlite/checkpointer.js';
import { withStatementCache } from '../src/store/sqlite/statement-cache.js';
import { openStore } from '../src/store/open.js';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { desireLrp, updateDesiredLrp } from '../src/core/desired-lrps.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import { lrpInput, tempDir } from './helpers.js';

const require = createRequire(import.meta.url);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SQLite WAL checkpointer', () => {
  const dir = tempDir();
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs its worker only while commits come often, with automatic checkpoints meanwhile', async () => {
    const path = join(dir, 'pace.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (v TEXT)');
    const errors: string[] = [];
    const checkpointer = new BackgroundCheckpointer(path, db, (m) => errors.push(m), { tickMs: 100, busyCommits: 20, quietTicks: 3 });
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    let commits = 0;
    const commit = () => {
      commits++;
      checkpointer.committed();
      insert.run('x'.repeat(2000));
    };
    const autoCheckpointPages = () => db.pragma('wal_autocheckpoint', { simple: true });
    try {
      for (let i = 0; i < 19; i++) commit();
      assert.equal(checkpointer.running, false);
      assert.equal(autoCheckpointPages(), 1000);
      commit();
      assert.equal(checkpointer.running, true);
      assert.equal(autoCheckpointPages(), 0);
      // a commit every tick is below the busy rate: the worker ends after three such ticks
      for (let i = 0; i < 5 && checkpointer.running; i++) {
        commit();
        await sleep(100);
      }
      await sleep(200);
      assert.equal(checkpointer.running, false);
      assert.equal(autoCheckpointPages(), 1000);
      for (let i = 0; i < 20; i++) commit();
      assert.equal(checkpointer.running, true, 'a new burst starts a worker again');
      await sleep(150); // it checkpoints
      assert.deepEqual(errors, []);
    } finally {
      checkpointer.stop();
      db.close();
    }
    assert.equal(checkpointer.running, false);
    const reopened = new Database(path);
    assert.equal(reopened.prepare('SELECT count(*) FROM t').pluck().get(), commits);
    reopened.close();
  });
});

describe('SQLite store, write lock held by another connection', () => {
  const dir = tempDir();
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs a use case that reads before it writes once the lock is free, instead of failing it, without blocking the event loop', async () => {
    const store = await openStore(undefined, dir);
    const ctx: CoreContext = { store, bus: new EventBus(), log: pino({ level: 'silent' }), now: Date.now };
    const holder = spawn(
      process.execPath,
      ['-e', `const db = new (require(${JSON.stringify(require.resolve('better-sqlite3'))}))(process.argv[1]); db.prepare('BEGIN IMMEDIATE').run(); console.log('locked'); setTimeout(() => db.prepare('COMMIT').run(), 300);`, join(dir, 'drover.db')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await desireLrp(ctx, OPEN_MODE_PRINCIPAL, lrpInput('held', 'd', 1));
      await once(holder.stdout!, 'data'); // the other connection holds the write lock for 300 ms
      // an update reads the desired LRP, then writes: SQLite cannot make a reader wait for the write lock
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      try {
        await updateDesiredLrp(ctx, OPEN_MODE_PRINCIPAL, 'held', { instances: 3 });
      } finally {
        clearInterval(ticker);
      }
      // it waited on a timer: the event loop went on meanwhile (SQLite's busy handler sleeps in the thread)
      assert.ok(ticks >= 10, `the event loop ran ${ticks} ticks of 10 ms during a wait of about 300 ms`);
      assert.equal((await store.listActualLrps({ processGuid: 'held' })).length, 3);
      assert.equal((await store.getDesiredLrp('held'))?.instances, 3);
    } finally {
      holder.kill();
      await store.close();
    }
  });
});

describe('SQLite statement cache', () => {
  it('keeps the statements in use when new texts push the others out', () => {
    const cache = withStatementCache(new Database(':memory:'), () => {});
    try {
      const hot = cache.prepare('SELECT 0');
      const first = cache.prepare('SELECT 1');
      for (let i = 2; i < 256; i++) cache.prepare(`SELECT ${i}`); // the cache is full
      assert.equal(cache.prepare('SELECT 0'), hot, 'a cached statement is reused');
      cache.prepare('SELECT 256'); // pushes out one statement: the oldest not used since
      assert.equal(cache.prepare('SELECT 0'), hot, 'the statement in use stays');
      assert.notEqual(cache.prepare('SELECT 1'), first, 'the oldest unused one was pushed out (and is compiled again)');
    } finally {
      cache.close();
    }
  });
});
