// WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside whichever
// commit crosses the threshold, and it syncs the database file: in a loop of small write
// transactions that was two thirds of the commit time, all of it blocking the event loop.
// A worker thread with its own connection checkpoints every few ms instead; SQLite lets a
// checkpoint run alongside the writer. Should the worker fail, the connection goes back
// to automatic checkpoints.

import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

const EVERY_MS = 50;
/** 4,000 frames of 4 KiB: the WAL stays under about 16 MB however steady the writes */
const RESTART_FRAMES = 4000;
/** SQLite's default (pages); restored when the worker is gone */
const AUTO_CHECKPOINT_PAGES = 1000;

export class BackgroundCheckpointer {
  private readonly worker: Worker;
  private stopping = false;

  constructor(path: string, db: BetterSqlite3.Database, onError: (message: string) => void) {
    db.pragma('wal_autocheckpoint = 0');
    db.pragma(`journal_size_limit = ${RESTART_FRAMES * 4096}`); // a WAL that starts over shrinks back to this
    this.worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path, everyMs: EVERY_MS, restartFrames: RESTART_FRAMES } });
    this.worker.unref(); // an open store does not keep the process alive
    const fallBack = (why: string) => {
      if (this.stopping || !db.open) return;
      this.stopping = true;
      db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
      onError(why);
    };
    this.worker.on('message', (m: { error?: string }) => m.error && onError(`WAL checkpoint failed: ${m.error}`));
    this.worker.on('error', (e) => fallBack(`WAL checkpointer failed: ${e.message}`));
    this.worker.on('exit', (code) => fallBack(`WAL checkpointer exited (${code})`));
  }

  /** Asks the worker to close its connection and end (it does not wait). */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.worker.postMessage('stop');
  }
}
