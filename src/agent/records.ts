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

/** How long a burst of changes may go unwritten: a SIGKILL then forgets at most this much. */
const MAX_UNWRITTEN_MS = 100;

export class InstanceRecords {
  private records = new Map<string, InstanceRecord>();
  private writtenAt = 0;
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

  put(r: InstanceRecord): void {
    this.records.set(r.instanceGuid, r);
    this.changed();
  }

  /** Written with the next change or turn: a record left behind is harmless (adoption checks the start time). */
  delete(instanceGuid: string): void {
    if (this.records.delete(instanceGuid)) this.writeSoon();
  }

  /**
   * The whole file is rewritten on a change, so a burst (hundreds of starts in one turn of
   * the event loop) is written once at its end, or every MAX_UNWRITTEN_MS while it lasts,
   * rather than once per instance. Either way a record is on disk before the agent reports
   * its instance started: that takes at least one more turn.
   */
  private changed(): void {
    if (Date.now() - this.writtenAt >= MAX_UNWRITTEN_MS) this.write();
    else this.writeSoon();
  }

  private writeSoon(): void {
    if (this.writePending) return;
    this.writePending = true;
    setImmediate(() => this.write());
  }

  private write(): void {
    this.writePending = false;
    this.writtenAt = Date.now();
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.all()));
    renameSync(tmp, this.file);
  }
}
