// WAL checkpoints off the event loop while commits come often. SQLite's automatic checkpoint
// runs inside whichever commit crosses the threshold, and it syncs the database file: in a
// loop of small write transactions that was two thirds of the commit time, all of it
// blocking the event loop. A worker thread with its own connection checkpoints every few ms
// instead; SQLite lets a checkpoint run alongside the writer.
// The worker is an isolate of its own (about 8 MiB of RSS), so it runs only while it pays:
// it starts once commits come at 20 a second and ends after 10 seconds below that rate.
// Meanwhile SQLite's automatic checkpoint is back on: at a few commits a second it runs once
// every few minutes (per 1,000 pages). Should a worker fail, the
// connection stays on automatic checkpoints.
// While the worker runs, the connection also reads the database file through a memory map
// (no copy per page into SQLite's cache: about 5 % less CPU per desire). An idle daemon
// does without: the pages a map has touched count in its RSS (4-6 MiB with 1,000 instances).

import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

const EVERY_MS = 50;
/**
 * 16,000 frames of 4 KiB: while the worker runs, the WAL stays under about 64 MB however
 * steady the writes. Each RESTART holds off the writers for a few ms (it syncs the WAL and
 * the database file under the write lock): at 4,000 frames a steady stream of desires waited
 * for it 2 % of the time, at 16,000 under 1 %.
 */
const RESTART_FRAMES = 16000;
/** the WAL's size once it starts over while no worker runs (a burst's larger WAL shrinks back to this) */
const QUIET_WAL_BYTES = 16 * 1024 * 1024;
/** SQLite's default (pages), in effect while no worker runs */
const AUTO_CHECKPOINT_PAGES = 1000;
/** the part of the database file read through a memory map while a worker runs */
const BUSY_MMAP_BYTES = 256 * 1024 * 1024;
export interface CheckpointerPace {
  /** how often the commit rate is looked at */
  tickMs: number;
  /** commits within one tick that start the worker (an idle daemon makes one every few seconds) */
  busyCommits: number;
  /** ticks in a row below that which end it (a start and end cost about 80 ms of CPU) */
  quietTicks: number;
}

const DEFAULT_PACE: CheckpointerPace = { tickMs: 1000, busyCommits: 20, quietTicks: 10 };

export class BackgroundCheckpointer {
  private worker?: Worker;
  /** commits since the last tick */
  private commits = 0;
  private quietTicks = 0;
  /** closing, or a worker failed: no worker starts any more */
  private done = false;
  /** resolves once every worker started so far has ended (and so closed its connection) */
  private workersEnded: Promise<void> = Promise.resolve();
  private readonly tick: NodeJS.Timeout;

  constructor(
    private readonly path: string,
    private readonly db: BetterSqlite3.Database,
    private readonly onError: (message: string) => void,
    private readonly pace: CheckpointerPace = DEFAULT_PACE,
  ) {
    this.quietSettings();
    this.tick = setInterval(() => this.onTick(), pace.tickMs);
    this.tick.unref(); // an open store does not keep the process alive
  }

  /** Counts a commit on the connection (called just before it runs). */
  committed(): void {
    if (++this.commits >= this.pace.busyCommits && !this.worker && !this.done) this.startWorker();
  }

  /** Whether a checkpoint worker is running (for tests). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Ends the worker, if any, and the ticks; `ended` tells when the worker is gone. */
  stop(): void {
    this.done = true;
    clearInterval(this.tick);
    this.stopWorker();
  }

  /**
   * Resolves once every worker has ended. A worker closes its own connection after `stop`,
   * which may still add or remove the -wal and -shm files.
   */
  ended(): Promise<void> {
    return this.workersEnded;
  }

  private onTick(): void {
    const busy = this.commits >= this.pace.busyCommits;
    this.commits = 0;
    if (!this.worker) return;
    this.quietTicks = busy ? 0 : this.quietTicks + 1;
    if (this.quietTicks >= this.pace.quietTicks) {
      this.stopWorker();
      this.quietSettings();
    }
  }

  private startWorker(): void {
    this.quietTicks = 0;
    this.db.pragma('wal_autocheckpoint = 0');
    this.db.pragma(`mmap_size = ${BUSY_MMAP_BYTES}`);
    this.db.pragma(`journal_size_limit = ${RESTART_FRAMES * 4096}`); // kept at its size: not cut and grown again at each restart
    const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path: this.path, everyMs: EVERY_MS, restartFrames: RESTART_FRAMES } });
    worker.unref();
    this.worker = worker;
    const ended = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.workersEnded = Promise.all([this.workersEnded, ended]).then(() => undefined);
    const fail = (why: string) => {
      if (this.worker !== worker) return; // asked to stop
      this.worker = undefined;
      this.done = true;
      this.quietSettings();
      this.onError(why);
    };
    worker.on('message', (m: { error?: string }) => m.error && this.onError(`WAL checkpoint failed: ${m.error}`));
    worker.on('error', (e) => fail(`WAL checkpointer failed: ${e.message}`));
    worker.on('exit', (code) => fail(`WAL checkpointer exited (${code})`));
  }

  /** The connection's settings while no worker runs. */
  private quietSettings(): void {
    if (!this.db.open) return;
    this.db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    this.db.pragma('mmap_size = 0');
    this.db.pragma(`journal_size_limit = ${QUIET_WAL_BYTES}`);
  }

  /** Asks the worker to close its connection and end. */
  private stopWorker(): void {
    const worker = this.worker;
    this.worker = undefined;
    // a closing store waits until it has ended (see ended), which it does promptly: until
    // then it keeps the process running
    worker?.ref();
    worker?.postMessage('stop');
  }
}
