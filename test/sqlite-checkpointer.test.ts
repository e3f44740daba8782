import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BackgroundCheckpointer } from '../src/store/sqlite/checkpointer.js';
import { tempDir } from './helpers.js';

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
