// The cell agent: claims the instances placed on its cell, runs them, reports what happens
// to them through the ActualLRP lifecycle, and stops what should no longer run here.

import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { findRunAction, type ActualLrpInstanceKey, type ActualLrpKey, type ActualLrpPlacement, type DesiredLrp } from '../model/lrp.js';
import { DEFAULT_CELL_TTL_MS } from '../model/cell.js';
import { adoptProcess, processesWithEnv, processGroupAlive, processStartTime, rotateLogIfLarge, spawnProcess, startProcess, stopProcessGroup, type ProcessSpec, type RunningProcess } from './executor.js';
import { SpawnHelper } from './spawn-helper.js';
import { InstanceRecords, type InstanceRecord } from './records.js';
import { waitUntilStarted } from './start-check.js';
import type { CellControlPlane, InstanceClaim, InstanceStart } from './control-plane.js';
import { prepareInstance } from './prepare.js';
import { Batcher } from './batcher.js';

export interface CellAgentOptions {
  cellId: string;
  site: string;
  sections: string[];
  placementTags: string[];
  dataDir: string;
  ttlMs: number;
  /** a process alive this long, or settled sooner (start-check.ts), counts as started (when it has no health check) */
  startWindowMs: number;
  syncIntervalMs: number;
  logMaxBytes: number;
  logKeep: number;
  /** start processes through drover-spawner (spawn-helper.ts); false: on the agent's own thread */
  spawnHelper: boolean;
}

export const DEFAULT_AGENT_OPTIONS = {
  ttlMs: DEFAULT_CELL_TTL_MS,
  startWindowMs: 200,
  syncIntervalMs: 2000,
  logMaxBytes: 10 * 1024 * 1024,
  logKeep: 3,
  spawnHelper: true,
  placementTags: [] as string[],
};

interface Supervised {
  record: InstanceRecord;
  proc: RunningProcess;
  key: ActualLrpKey;
  stopping: boolean;
}

const keyOf = (k: ActualLrpKey) => `${k.processGuid}/${k.index}`;

/**
 * An event starts a sync this much later: events come in bursts (a batch commits many), and a
 * sync lists every instance on the cell, which should not compete with the work that caused them.
 */
const EVENT_SYNC_DELAY_MS = 50;

/** Every process this agent starts carries its data dir under this name: how it finds its own. */
const AGENT_MARKER = 'DROVER_AGENT_HOME';
const SWEEP_INTERVAL_MS = 10_000;

/** Items per claim or start request (a request stays well under the default 1 MB body limit). */
const MAX_BATCH = 500;

export class CellAgent {
  private readonly running = new Map<string, Supervised>();
  /** instances with operations in flight (how many), so a sync never acts on them twice */
  private readonly busy = new Map<string, number>();
  private readonly records: InstanceRecords;
  private readonly spawner: SpawnHelper | undefined;
  /** claims and start reports of instances started side by side go in shared requests */
  private readonly claims: Batcher<InstanceClaim, DesiredLrp | undefined>;
  private readonly starts: Batcher<InstanceStart, void>;
  private readonly timers: NodeJS.Timeout[] = [];
  private stopWatching: () => void = () => {};
  private syncing = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncAgain = false;
  private closed = false;

  constructor(
    private readonly cp: CellControlPlane,
    private readonly opts: CellAgentOptions,
    private readonly log: Logger,
  ) {
    this.records = new InstanceRecords(join(opts.dataDir, 'instances.json'));
    const helper = opts.spawnHelper && SpawnHelper.available();
    if (opts.spawnHelper && !helper) log.warn('drover-spawner was not built: the agent starts processes on its own thread (slower)');
    this.spawner = helper ? new SpawnHelper() : undefined;
    this.claims = new Batcher<InstanceClaim, DesiredLrp | undefined>(async (items) => {
      const { errors, desiredLrps } = await cp.claimMany(items);
      return items.map((c, i) => errors[i] ?? desiredLrps.find((d) => d.processGuid === c.key.processGuid));
    }, MAX_BATCH);
    this.starts = new Batcher<InstanceStart, void>((items) => cp.startMany(items), MAX_BATCH);
  }

  get cellId(): string {
    return this.opts.cellId;
  }

  async start(): Promise<void> {
    await this.adoptLeftovers();
    this.sweepUntracked();
    await this.heartbeat();
    this.timers.push(setInterval(() => this.sweepUntracked(), SWEEP_INTERVAL_MS));
    this.timers.push(setInterval(() => void this.heartbeat(), Math.max(100, Math.floor(this.opts.ttlMs / 3))));
    this.timers.push(setInterval(() => this.sync(), this.opts.syncIntervalMs));
    this.timers.push(setInterval(() => void this.rotateLogs(), 5000));
    this.stopWatching = this.cp.watch(() => {
      this.syncTimer ??= setTimeout(() => {
        this.syncTimer = undefined;
        this.sync();
      }, EVENT_SYNC_DELAY_MS);
    });
    this.log.info({ cellId: this.opts.cellId, adopted: this.running.size }, 'cell agent started');
  }

  /** Stops watching; processes keep running (they are adopted by the next run). Resolves once their records are written. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopWatching();
    clearTimeout(this.syncTimer);
    for (const t of this.timers) clearInterval(t);
    this.spawner?.close();
    await this.records.flushed();
  }

  /** Stops every process this agent runs (used when the agent itself is shut down for good). */
  async stopAll(): Promise<void> {
    await this.close();
    await Promise.all([...this.running.values()].map((s) => this.stopProcess(s)));
    await this.records.flushed();
  }

  localInstances(): { instanceGuid: string; pid: number; processGuid: string; index: number }[] {
    return [...this.running.values()].map((s) => ({ instanceGuid: s.record.instanceGuid, pid: s.proc.pid, ...s.key }));
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.cp.heartbeat({
        cellId: this.opts.cellId,
        site: this.opts.site,
        sections: this.opts.sections,
        placementTags: this.opts.placementTags,
        ttlMs: this.opts.ttlMs,
      });
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'heartbeat failed');
    }
  }

  /** Processes recorded by an earlier run: adopt the ones still alive, clean up the rest. */
  private async adoptLeftovers(): Promise<void> {
    for (const r of this.records.all()) {
      const sameProcess = r.startTicks !== undefined && processStartTime(r.pid) === r.startTicks;
      const proc = sameProcess ? adoptProcess(r.pid, r.pgid, r.startedAt) : undefined;
      if (proc) {
        this.supervise({ record: r, proc, key: { processGuid: r.processGuid, index: r.index, domain: '' }, stopping: false });
        continue;
      }
      if (processGroupAlive(r.pgid)) await stopProcessGroup(r.pgid, r.stopGraceMs);
      this.records.delete(r.instanceGuid);
    }
  }

  /**
   * A process of this agent that nothing here tracks (its record lost to a SIGKILL at the
   * wrong moment, or a member that left its group) would run beside its replacement: stop it.
   * Synchronous, and skipped while spawns are under way, so it never sees a process between
   * its spawn and its supervision.
   */
  private sweepUntracked(): void {
    // The spawner may have started a process whose pid has not reached the agent yet.
    if (this.spawner && this.spawner.spawning > 0) return;
    const tracked = new Set([...this.running.values()].map((s) => s.record.pgid));
    for (const p of processesWithEnv(AGENT_MARKER, resolve(this.opts.dataDir))) {
      if (tracked.has(p.pgid)) continue;
      tracked.add(p.pgid);
      this.log.warn({ pid: p.pid, pgid: p.pgid }, 'stopping a process of this agent that it does not track');
      void stopProcessGroup(p.pgid, 1000);
    }
  }

  /** Level-triggered: compare what the control plane says runs here with what does. Never overlaps itself. */
  sync(): void {
    if (this.closed) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    void this.syncOnce()
      .catch((e) => this.log.warn({ err: (e as Error).message }, 'sync failed'))
      .finally(() => {
        this.syncing = false;
        if (this.syncAgain) {
          this.syncAgain = false;
          this.sync();
        }
      });
  }

  private async syncOnce(): Promise<void> {
    const listedAt = Date.now();
    const actuals = await this.cp.actualLrpsOnCell(this.opts.cellId);
    const mine = new Set<string>();
    for (const a of actuals) {
      const key = keyOf(a.actualLrpKey);
      const onThisCell = a.actualLrpInstanceKey.cellId === this.opts.cellId;
      if (onThisCell) mine.add(a.actualLrpInstanceKey.instanceGuid);
      if (this.busy.has(key)) continue;
      const local = onThisCell ? this.running.get(a.actualLrpInstanceKey.instanceGuid) : undefined;
      if (a.state === 'UNCLAIMED' && a.targetCellId === this.opts.cellId && !a.stopRequested) {
        this.track(key, () => this.launch(a.actualLrpKey));
      } else if (onThisCell && (a.state === 'CLAIMED' || a.state === 'RUNNING')) {
        if (a.stopRequested) this.track(key, () => this.stopAndRemove(a, local));
        else if (!local) this.track(key, () => this.cp.crash(a.actualLrpKey, a.actualLrpInstanceKey, 'process lost: not running on its cell'));
        else if (a.state === 'CLAIMED' && local.proc.alive()) this.track(key, () => this.starts.add({ key: a.actualLrpKey, instanceKey: a.actualLrpInstanceKey, netInfo: this.netInfo() }));
        else local.key = a.actualLrpKey;
      }
    }
    // Anything running here that the control plane no longer places here is stale.
    for (const s of this.running.values()) {
      if (!mine.has(s.record.instanceGuid) && !s.stopping && !this.busy.has(keyOf(s.key)) && s.record.startedAt < listedAt) {
        this.log.info({ instance: s.record.instanceGuid, lrp: keyOf(s.key) }, 'stopping stale instance');
        void this.stopProcess(s);
      }
    }
  }

  /** Runs an operation on one instance; the instance stays busy until every one of them is done. */
  private track(key: string, op: () => Promise<unknown>): Promise<void> {
    this.busy.set(key, (this.busy.get(key) ?? 0) + 1);
    return op()
      .then(
        () => undefined,
        (e) => this.log.debug({ lrp: key, err: (e as Error).message }, 'instance operation refused'),
      )
      .finally(() => {
        const left = (this.busy.get(key) ?? 1) - 1;
        if (left > 0) this.busy.set(key, left);
        else this.busy.delete(key);
      });
  }

  private netInfo() {
    return { address: '127.0.0.1', ports: [], instanceAddress: '127.0.0.1', preferredAddress: 'HOST' as const };
  }

  private newInstanceKey(): ActualLrpInstanceKey {
    return { instanceGuid: randomUUID(), cellId: this.opts.cellId };
  }

  private async launch(key: ActualLrpKey): Promise<void> {
    const ik = this.newInstanceKey();
    await this.run(key, ik, await this.claims.add({ key, instanceKey: ik }));
  }

  /** Runs an instance this cell has claimed under `ik`, and reports it started. */
  private async run(key: ActualLrpKey, ik: ActualLrpInstanceKey, desired: DesiredLrp | undefined): Promise<void> {
    const run = findRunAction(desired?.action);
    if (!desired || !run) {
      await this.cp.remove(key, ik);
      return;
    }
    const { index, processGuid } = key;
    const env = this.environment(desired, key, ik);
    const dir = run.dir && isAbsolute(run.dir) ? run.dir : join(this.opts.dataDir, 'work', processGuid, String(index), run.dir ?? '');
    mkdirSync(dir, { recursive: true });
    const logFile = join(this.opts.dataDir, 'logs', processGuid, `${index}.log`);
    // attachment, macros, a leader's fence (prepare.ts); what fails there is this start's crash
    const prepare = { cellId: this.opts.cellId, dataDir: this.opts.dataDir, webservers: this.cp.urls, fetchBytes: (p: string) => this.cp.fetchBytes(p) };
    const cmd = await prepareInstance(prepare, desired, { path: run.path, args: run.args ?? [], env }, dir, dirname(logFile)).catch((e: Error) => e);
    if (cmd instanceof Error) {
      await this.cp.crash(key, ik, cmd.message);
      return;
    }
    const spec: ProcessSpec = { ...cmd, dir, user: run.user || undefined, logFile };
    const proc = this.spawner ? await startProcess(spec, this.spawner.spawn) : spawnProcess(spec);
    if (proc.pid === 0) {
      await this.cp.crash(key, ik, (await proc.exited).reason);
      return;
    }
    const record: InstanceRecord = {
      processGuid,
      index,
      instanceGuid: ik.instanceGuid,
      pid: proc.pid,
      pgid: proc.pgid,
      startedAt: proc.startedAt,
      startTicks: proc.startTicks,
      logFile,
      stopGraceMs: desired.stopGraceMs,
    };
    const recorded = this.records.put(record);
    const s: Supervised = { record, proc, key, stopping: false };
    this.supervise(s);
    // reported started only once it is on disk too (written while the start window runs)
    const [started] = await Promise.all([
      waitUntilStarted(proc, { startWindowMs: this.opts.startWindowMs, startTimeoutMs: desired.startTimeoutMs, healthCheck: desired.healthCheck, env: cmd.env }),
      recorded,
    ]);
    if (started && !s.stopping) await this.starts.add({ key, instanceKey: ik, netInfo: this.netInfo() });
    else if (!started && proc.alive()) await this.stopProcess(s); // unhealthy: the exit watcher reports the crash
  }

  private environment(d: DesiredLrp, key: ActualLrpKey, ik: ActualLrpInstanceKey): Record<string, string> {
    const run = findRunAction(d.action)!;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: process.env.HOME ?? '/',
      INSTANCE_INDEX: String(key.index),
      INSTANCE_GUID: ik.instanceGuid,
      PROCESS_GUID: key.processGuid,
      CELL_ID: this.opts.cellId,
    };
    for (const v of [...(d.env ?? []), ...(run.env ?? [])]) env[v.name] = v.value;
    env[AGENT_MARKER] = resolve(this.opts.dataDir);
    return env;
  }

  /** Watches one process: an exit nobody asked for is a crash. */
  private supervise(s: Supervised): void {
    this.running.set(s.record.instanceGuid, s);
    void s.proc.exited.then((info) => {
      this.running.delete(s.record.instanceGuid);
      this.records.delete(s.record.instanceGuid);
      if (s.stopping || this.closed) return;
      const ik = { instanceGuid: s.record.instanceGuid, cellId: this.opts.cellId };
      this.log.info({ lrp: keyOf(s.key), reason: info.reason }, 'instance crashed');
      // Busy until the crash is reported: a sync in between would find the instance RUNNING
      // here with no process and report it lost, and this report (with the real reason) would
      // then be refused.
      void this.track(keyOf(s.key), async () => {
        // a leftover child of the group would otherwise outlive its leader
        if (processGroupAlive(s.proc.pgid)) await stopProcessGroup(s.proc.pgid, 1000);
        // When the state machine restarts it at once here, the answer is the claim of the
        // restart: it runs without waiting for the event, a list and a claim of its own.
        const restartAs = this.newInstanceKey();
        const desired = await this.cp.crash(s.key, ik, info.reason, restartAs);
        if (desired) await this.run(s.key, restartAs, desired);
      }).then(() => this.sync());
    });
  }

  private async stopProcess(s: Supervised): Promise<void> {
    s.stopping = true;
    await s.proc.stop(s.record.stopGraceMs);
    this.records.delete(s.record.instanceGuid);
  }

  private async stopAndRemove(a: ActualLrpPlacement, local: Supervised | undefined): Promise<void> {
    if (local) await this.stopProcess(local);
    await this.cp.remove(a.actualLrpKey, a.actualLrpInstanceKey);
  }

  private async rotateLogs(): Promise<void> {
    for (const s of this.running.values()) await rotateLogIfLarge(s.record.logFile, this.opts.logMaxBytes, this.opts.logKeep).catch(() => false);
  }
}
