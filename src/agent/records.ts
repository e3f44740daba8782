// What this agent started, on disk, so that after a SIGKILL the next run can adopt its
// processes (or stop them) instead of starting them twice.

import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';

export interface InstanceRecord {
  processGuid: string;
  index: number;
  instanceGuid: string;
  pid: number;
  pgid: number;
  startedAt: number;
  startTicks: number | undefined;
  logFile: string;
  stopGraceMs: number;
}

/**
 * A burst of starts writes the file this often at most: each write is the whole list and a
 * rename. Written once per instance (and synchronously), 200 starts took 1.1 s of the
 * agent's thread under load.
 */
const MIN_WRITE_INTERVAL_MS = 50;

export class InstanceRecords {
  private records = new Map<string, InstanceRecord>();
  /** the write that will include changes made now; it has not taken its snapshot yet */
  private nextWrite: Promise<void> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private lastWriteAt = 0;

  constructor(private readonly file: string) {
    try {
      const list = JSON.parse(readFileSync(file, 'utf8')) as InstanceRecord[];
      for (const r of list) this.records.set(r.instanceGuid, r);
    } catch {
      // first run, or a torn file from a crash mid-write cannot happen (rename is atomic)
    }
  }

  all(): InstanceRecord[] {
    return [...this.records.values()];
  }

  /**
   * Resolves once the record is on disk; the caller reports its instance started only then.
   * A record lost to a SIGKILL before that is a process the next run does not adopt: its
   * marker sweep stops it, and the instance is restarted.
   */
  put(r: InstanceRecord): Promise<void> {
    this.records.set(r.instanceGuid, r);
    return this.writeSoon();
  }

  /** A record left behind is harmless (adoption checks the start time). */
  delete(instanceGuid: string): void {
    if (this.records.delete(instanceGuid)) this.writeSoon().catch(() => {}); // the next write retries
  }

  /** Resolves once every change made so far is written (or its write has failed): a closing agent waits for it. */
  async flushed(): Promise<void> {
    await this.nextWrite?.catch(() => {});
    await this.writing.catch(() => {});
  }

  /** One write for everything changed meanwhile: after the one in progress, on the next turn or once the interval has passed. */
  private writeSoon(): Promise<void> {
    this.nextWrite ??= (async () => {
      await this.writing.catch(() => {}); // its caller has its error; this write retries
      const wait = this.lastWriteAt + MIN_WRITE_INTERVAL_MS - Date.now();
      await (wait > 0 ? sleep(wait) : nextTurn());
      this.nextWrite = undefined;
      this.writing = this.write();
      return this.writing;
    })();
    return this.nextWrite;
  }

  /** Off the agent's thread; a SIGKILL mid-write leaves the previous file (rename is atomic). */
  private async write(): Promise<void> {
    this.lastWriteAt = Date.now();
    const text = JSON.stringify(this.all());
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, this.file);
  }
}
