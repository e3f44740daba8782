// What this agent started, on disk, so that after a SIGKILL the next run can adopt its
// processes (or stop them) instead of starting them twice.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

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
 * A burst of starts shares its writes: each write is the whole file, so one per start made a
 * launch of n instances write O(n²) bytes (and as much garbage). Between two writes at least
 * this long; a change after a quiet spell is written at once.
 */
const WRITE_INTERVAL_MS = 100;

export class InstanceRecords {
  private records = new Map<string, InstanceRecord>();
  /** the next write; every change made before it starts is in it */
  private nextWrite: Promise<void> | undefined;
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
   * Resolves once the record is on disk; the caller reports the instance started only then.
   * A SIGKILL before that leaves a process with no record: the next run's sweep of untracked
   * processes stops it (cell-agent.ts), so it never runs twice.
   */
  put(r: InstanceRecord): Promise<void> {
    this.records.set(r.instanceGuid, r);
    return this.writeSoon();
  }

  /** Written with the next write: a record left behind is harmless (adoption checks the start time). */
  delete(instanceGuid: string): void {
    // a failed write is tried again, whole, with the next change
    if (this.records.delete(instanceGuid)) this.writeSoon().catch(() => undefined);
  }

  private writeSoon(): Promise<void> {
    this.nextWrite ??= new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        this.nextWrite = undefined;
        try {
          this.write();
          resolve();
        } catch (e) {
          reject(e as Error);
        }
      }, Math.max(0, this.lastWriteAt + WRITE_INTERVAL_MS - Date.now()));
    });
    return this.nextWrite;
  }

  private write(): void {
    this.lastWriteAt = Date.now();
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.all()));
    renameSync(tmp, this.file);
  }
}
