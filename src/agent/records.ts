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

export class InstanceRecords {
  private records = new Map<string, InstanceRecord>();
  private writePending = false;

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
   * Written before the caller goes on: a process whose record could be lost to a SIGKILL
   * would outlive the agent unseen (it runs in its own process group) and run twice.
   */
  put(r: InstanceRecord): void {
    this.records.set(r.instanceGuid, r);
    this.write();
  }

  /** Written with the next change or turn: a record left behind is harmless (adoption checks the start time). */
  delete(instanceGuid: string): void {
    if (this.records.delete(instanceGuid)) this.writeSoon();
  }

  private writeSoon(): void {
    if (this.writePending) return;
    this.writePending = true;
    setImmediate(() => this.write());
  }

  private write(): void {
    this.writePending = false;
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.all()));
    renameSync(tmp, this.file);
  }
}
