// A few spawner threads (spawn-worker.ts), started on first use: N spawns wait for their
// children's exec side by side instead of one after another on the agent's event loop.
// Each thread costs a V8 isolate, about 9 MiB of RSS, and lives while it has children to reap.

import { Worker } from 'node:worker_threads';
import { watchUntilGone, type RawExit, type SpawnRequest, type Spawned } from './executor.js';
import type { SpawnerCommand, SpawnerReport } from './spawn-worker.js';

interface Pending {
  /** set once the thread has spawned it */
  pid?: number;
  startTicks?: number;
  spawned(pid: number, startTicks: number | undefined): void;
  exit(raw: RawExit): void;
}

interface Thread {
  worker: Worker;
  /** spawns posted and not yet answered: the next spawn goes to the least busy thread */
  spawning: number;
  children: Map<number, Pending>;
}

const WORKER_URL = new URL('./spawn-worker.js', import.meta.url);

export class SpawnPool {
  private readonly threads: Thread[] = [];
  private nextId = 1;
  private closed = false;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a spawn pool needs at least one thread, got ${size}`);
  }

  /** Spawns posted whose pid is not known here yet: a process of ours may exist that nothing tracks. */
  get spawning(): number {
    return this.threads.reduce((n, t) => n + t.spawning, 0);
  }

  readonly spawn = (request: SpawnRequest): Promise<Spawned> => {
    if (this.closed) return Promise.reject(new Error('the spawn pool is closed'));
    const thread = this.pick();
    const id = this.nextId++;
    return new Promise<Spawned>((resolve) => {
      let exit!: (raw: RawExit) => void;
      const exited = new Promise<RawExit>((r) => (exit = r));
      thread.children.set(id, { spawned: (pid, startTicks) => resolve({ pid, startTicks, exited }), exit });
      thread.spawning++;
      thread.worker.postMessage({ spawn: request, id } satisfies SpawnerCommand);
    });
  };

  /** Threads leave once their last child has exited (until then they report and reap them). */
  close(): void {
    this.closed = true;
    for (const t of this.threads) t.worker.postMessage({ close: true } satisfies SpawnerCommand);
  }

  private pick(): Thread {
    const idle = this.threads.reduce<Thread | undefined>((best, t) => (best && best.spawning <= t.spawning ? best : t), undefined);
    if (idle && (idle.spawning === 0 || this.threads.length >= this.size)) return idle;
    return this.startThread();
  }

  private startThread(): Thread {
    // Small heap limits: a spawner holds a few requests at a time.
    const worker = new Worker(WORKER_URL, { resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 } });
    const thread: Thread = { worker, spawning: 0, children: new Map() };
    this.threads.push(thread);
    // Its children must not keep the agent's process alive (in-thread spawns do not either).
    worker.unref();
    worker.on('message', (report: SpawnerReport) => this.report(thread, report));
    worker.on('error', () => {}); // an 'exit' follows, which handles it
    worker.on('exit', () => this.lost(thread));
    return thread;
  }

  private report(thread: Thread, r: SpawnerReport): void {
    const p = thread.children.get(r.id);
    if (!p) return;
    if ('exit' in r) {
      thread.children.delete(r.id);
      p.exit(r.exit);
      return;
    }
    thread.spawning--;
    p.pid = r.pid;
    p.startTicks = r.startTicks;
    p.spawned(r.pid, r.startTicks);
  }

  /**
   * A thread that died took its child handles with it: nothing reaps or reports those
   * children now. Each is watched through /proc until it is gone (exit status unknown, as for
   * an adopted process); a spawn it had not answered is reported as failed. Should that
   * child exist after all, it is untracked, and the agent's sweep stops it.
   */
  private lost(thread: Thread): void {
    this.threads.splice(this.threads.indexOf(thread), 1);
    for (const p of thread.children.values()) {
      if (p.pid === undefined) p.spawned(0, undefined);
      if (!p.pid) p.exit({ error: { message: 'the spawner thread stopped' } });
      else void watchUntilGone(p.pid, p.startTicks).then(() => p.exit({ code: null, signal: null, reason: 'exited after its spawner thread stopped (exit status unknown)' }));
    }
    thread.children.clear();
  }
}
