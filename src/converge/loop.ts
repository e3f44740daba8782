// The convergence loop: snapshot the store, plan, apply. Runs on an interval and soon after
// any committed change; never two passes at once; only while this replica leads.
// The pass after a commit is targeted: it plans only the LRPs the commits touched (their
// events name them), with the other LRPs' instances counted per cell for placement. The
// interval pass, a cell or service change and a leader's first pass plan everything; they
// also catch what depends on the clock alone (claim timeouts, restarts due, lost cells), and
// the interval runs one only once the clock has reached such a change (nextClockChange), or
// when the store holds commits this process did not announce (another replica's).

import type { CoreContext, CreatedLrp, Touched } from '../core/context.js';
import { applyPlan, type OnSettled } from '../core/convergence.js';
import { instancesCreatedWith } from '../core/desired-lrps.js';
import { cellAlive } from '../model/cell.js';
import type { ActualLrp } from '../model/lrp.js';
import type { PlacementCount } from '../store/store.js';
import { loadCellOf, nextClockChange, plan, type PlanAction, type Snapshot } from './planner.js';
import { DroverError } from '../model/errors.js';
import type { LeaseFence } from '../store/lease.js';

export interface ConvergenceOptions {
  intervalMs: number;
  /** wait this long after a change before a pass, so bursts of changes share one pass */
  debounceMs: number;
  claimTimeoutMs?: number;
  isLeader: () => boolean;
  /** the leader's lease and epoch, checked by every convergence write (none: unfenced, e.g. SQLite) */
  fence?: () => LeaseFence | undefined;
}

export interface PassReport {
  actions: number;
  applied: number;
  /** desired LRPs the snapshot held */
  lrps: number;
  snapshotMs: number;
  planMs: number;
  applyMs: number;
  /** when the clock alone would change the plan of the pass's LRPs (see nextClockChange) */
  clockChangeAt: number;
}

/**
 * A targeted pass reads its LRPs in slices of this many guids (one IN list each). It plans
 * touched LRPs at a cost that grows with their number, where a full pass's grows with the
 * store: the loop turns to a full pass only when the touched LRPs are over half of those the
 * store holds (knownLrps). (Under a steady stream of desires a full pass per batch made each
 * pass slower than the batch it served, so the batches, and the passes, kept growing; and
 * counting only the LRPs the last full pass saw, long ago at start, sent one pass over a
 * store of 20,000 LRPs to read them all because 1,025 had come since the last.)
 */
const TARGETED_SLICE = 1024;
/**
 * The interval's full passes read and plan every LRP: about 30 µs each (200 ms of CPU at
 * 7,000 LRPs), so on a large store a 1 s interval would keep a fifth of a core busy. An
 * interval tick is skipped while the last full pass's reading and planning would exceed this
 * share of the time since it; the clock-driven work (claim timeouts, restarts due, lost
 * cells) then waits a few seconds more. Passes set off by changes are not held back.
 */
const MAX_FULL_PASS_SHARE = 0.1;
/**
 * The interval runs a full pass only once the clock has reached a time at which it changes
 * a plan (the earliest of the passes' nextClockChange), or when the last full pass is this
 * old: a safety net for a change no commit announced. BBS converges every 30 s.
 */
const MAX_FULL_PASS_AGE_MS = 30_000;

/**
 * The guids in slices of at most TARGETED_SLICE, each padded (repeating its last) to a power
 * of two: the IN lists of the snapshot's queries then come in a few lengths, so their SQL
 * texts (and prepared statements) repeat.
 */
function paddedSlices(guids: string[]): string[][] {
  const slices: string[][] = [];
  for (let i = 0; i < guids.length; i += TARGETED_SLICE) {
    const slice = guids.slice(i, i + TARGETED_SLICE);
    let size = 8;
    while (size < slice.length) size *= 2;
    slices.push(slice.concat(Array<string>(size - slice.length).fill(slice[slice.length - 1]!)));
  }
  return slices;
}

/** The snapshot's reads of the LRPs: all of them (no slices), or the targeted ones slice by slice. */
async function readLrps<T>(slices: string[][] | undefined, read: (processGuids?: string[]) => Promise<T[]>): Promise<T[]> {
  if (!slices) return read();
  const rows: T[] = [];
  for (const processGuids of slices) rows.push(...(await read(processGuids)));
  return rows;
}

/** The LRPs of a targeted pass: those it reads, and those it plans as their creation was announced. */
export interface PassTarget {
  read: string[];
  created: CreatedLrp[];
}

/**
 * An LRP as an announcement of its creation gave it, if that is its whole state: every event
 * announced on it since the last pass was one of its creation events, and its instances were
 * all created with it (none was left at those indices). The pass then plans it without
 * reading it back, as Diego's auctioneer places the instances BBS sends it. (An instance of
 * an earlier LRP of that guid at a higher index is already asked to stop: its cell moves it.)
 * Its every write is a compare-and-set on what the announcement holds, so a change committed
 * meanwhile makes it skip; that change's own announcement brings the LRP back.
 */
function wholeCreation(c: CreatedLrp | undefined, events: number): CreatedLrp | undefined {
  if (!c || events !== 1 + c.actual.length) return undefined;
  // every-cell: the planner creates its instances, where such an earlier one may stand
  if (c.desired.placement.strategy === 'every-cell' || c.actual.length !== instancesCreatedWith(c.desired)) return undefined;
  return c;
}

/** `target`: a snapshot of those LRPs only (see the top of this file). */
export async function snapshot(ctx: CoreContext, claimTimeoutMs?: number, target?: PassTarget): Promise<Snapshot> {
  const slices = target && paddedSlices(target.read);
  // Actual LRPs first: the reads are not one snapshot, and a desire committed between them
  // must look like missing instances (creates the applier skips), never like orphans to retire.
  const actual = await readLrps(slices, (processGuids) => ctx.store.listActualLrps({ processGuids }));
  const [desired, cells] = await Promise.all([readLrps(slices, (processGuids) => ctx.store.listDesiredLrpPlanInfos({ processGuids })), ctx.store.listCells()]);
  for (const c of target?.created ?? []) {
    desired.push(c.desired);
    actual.push(...c.actual);
  }
  const now = ctx.now();
  // Only placement needs the others' load, and nothing is placed without a live cell.
  const otherLoad = target && cells.some((c) => cellAlive(c, now)) ? loadOutside(await ctx.store.countActualLrpsByPlacement(), actual) : undefined;
  return { now, desired, actual, cells, claimTimeoutMs, otherLoad };
}

/** Instances per cell of every LRP, less those of the snapshot's own. */
function loadOutside(counts: PlacementCount[], own: ActualLrp[]): Map<string, number> {
  const load = new Map<string, number>();
  const add = (cellId: string, n: number) => cellId && load.set(cellId, (load.get(cellId) ?? 0) + n);
  for (const c of counts) add(loadCellOf(c), c.count);
  for (const a of own) if (!a.stopRequested) add(loadCellOf({ state: a.state, cellId: a.actualLrpInstanceKey.cellId, targetCellId: a.targetCellId }), -1);
  return load;
}

/** Each planned instance as the snapshot had it (only those: a steady pass plans nothing). */
function plannedInstances(actual: Snapshot['actual'], actions: PlanAction[]): Map<string, ActualLrp> {
  const key = (processGuid: string, index: number) => `${processGuid}/${index}`;
  const wanted = new Set(actions.map((a) => key(a.processGuid, a.index)));
  const seen = new Map<string, ActualLrp>();
  for (const a of actual) {
    const k = key(a.actualLrpKey.processGuid, a.actualLrpKey.index);
    if (wanted.has(k)) seen.set(k, a);
  }
  return seen;
}

export async function convergeOnce(ctx: CoreContext, claimTimeoutMs?: number, fence?: LeaseFence, target?: PassTarget, onSettled?: OnSettled): Promise<PassReport> {
  const t0 = performance.now();
  const snap = await snapshot(ctx, claimTimeoutMs, target);
  const t1 = performance.now();
  const actions = plan(snap);
  const t2 = performance.now();
  const { applied } = actions.length ? await applyPlan(ctx, actions, plannedInstances(snap.actual, actions), fence, onSettled) : { applied: 0 };
  const t3 = performance.now();
  return { actions: actions.length, applied, lrps: snap.desired.length, snapshotMs: t1 - t0, planMs: t2 - t1, applyMs: t3 - t2, clockChangeAt: nextClockChange(snap) };
}

export class ConvergenceLoop {
  private timer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private running = false;
  private again = false;
  private stopped = false;
  /** the next pass plans everything */
  private full = true;
  /** else it plans these LRPs: the number of events announced on each since the last pass began */
  private dirty = new Map<string, number>();
  /** the announced creations of some of them (see wholeCreation) */
  private created = new Map<string, CreatedLrp>();
  /**
   * LRPs the last pass left settled (see OnSettled), with the number of events it wrote for
   * each: an announcement naming such an LRP with exactly that many events is the pass's own
   * commit and nothing else on it, so the LRP is not planned again for it.
   */
  private settled = new Map<string, number>();
  private readonly onSettled: OnSettled = (settled) => {
    for (const [guid, events] of settled) this.settled.set(guid, events);
  };
  /** when the last full pass ended (performance.now()), how long it read and planned */
  private lastFull = { endedAt: -Infinity, ms: 0 };
  /**
   * About how many LRPs the store holds: those the last full pass saw, plus those announced
   * as created since (removals are not counted: an overestimate only keeps a pass targeted).
   */
  private knownLrps = 0;
  /** the earliest clockChangeAt of the last full pass and the passes since (ctx.now() ms) */
  private clockChangeAt = -Infinity;
  /** the last event id the interval saw in the store */
  private seenEventId = 0;
  private readonly onCommit = (_lastId: number, touched?: Touched) => {
    if (!touched || touched.other) {
      this.full = true;
      this.settled.clear();
    } else {
      this.knownLrps += touched.created.size;
      for (const [guid, events] of touched.processGuids) {
        if (this.settled.get(guid) !== events) {
          this.dirty.set(guid, (this.dirty.get(guid) ?? 0) + events);
          const c = touched.created.get(guid);
          if (c) this.created.set(guid, c);
        }
        this.settled.delete(guid);
      }
    }
    this.soon();
  };
  lastPass?: PassReport;

  constructor(
    private readonly ctx: CoreContext,
    private readonly opts: ConvergenceOptions,
  ) {}

  start(): void {
    this.ctx.bus.on('committed', this.onCommit);
    this.timer = setInterval(() => this.onInterval(), this.opts.intervalMs);
    this.trigger();
  }

  /** A full pass now (or right after the one running). */
  trigger(): void {
    this.full = true;
    this.run();
  }

  private onInterval(): void {
    if (!this.opts.isLeader()) return this.trigger();
    const { endedAt, ms } = this.lastFull;
    const age = performance.now() - endedAt;
    if (age < ms * (1 / MAX_FULL_PASS_SHARE - 1)) return;
    if (this.ctx.now() >= this.clockChangeAt || age >= MAX_FULL_PASS_AGE_MS) return this.trigger();
    // Commits not made in this process: another replica's, on a shared store. (This
    // process's own are known at commit, before their announcement, which waits a turn.)
    this.ctx.store.lastEventId().then(
      (id) => {
        if (id <= Math.max(this.seenEventId, this.ctx.bus.lastCommitted)) return;
        this.seenEventId = id;
        this.trigger();
      },
      (e) => this.ctx.log.error({ err: e }, 'convergence: reading the last event id failed'),
    );
  }

  stop(): void {
    this.stopped = true;
    this.ctx.bus.off('committed', this.onCommit);
    clearInterval(this.timer);
    clearTimeout(this.debounce);
  }

  private soon(): void {
    if (this.debounce || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.run();
    }, this.opts.debounceMs);
  }

  /** The dirty LRPs, split into those to read and those whose announced creation is their whole state. */
  private passTarget(): PassTarget {
    const target: PassTarget = { read: [], created: [] };
    for (const [guid, events] of this.dirty) {
      const c = wholeCreation(this.created.get(guid), events);
      if (c) target.created.push(c);
      else target.read.push(guid);
    }
    return target;
  }

  private run(): void {
    if (this.stopped) return;
    if (!this.opts.isLeader()) {
      // a new leader starts with a full pass
      this.dirty.clear();
      this.created.clear();
      this.clockChangeAt = -Infinity;
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    if (!this.full && this.dirty.size === 0) return;
    const target = this.full || this.dirty.size > this.knownLrps / 2 + TARGETED_SLICE ? undefined : this.passTarget();
    this.full = false;
    this.dirty = new Map();
    this.created = new Map();
    this.running = true;
    const knownAtStart = this.knownLrps;
    convergeOnce(this.ctx, this.opts.claimTimeoutMs, this.opts.fence?.(), target, this.onSettled)
      .then((report) => {
        this.lastPass = report;
        if (!target) {
          this.lastFull = { endedAt: performance.now(), ms: report.snapshotMs + report.planMs };
          this.knownLrps = report.lrps + (this.knownLrps - knownAtStart); // and those announced during the pass
          this.clockChangeAt = report.clockChangeAt;
        } else this.clockChangeAt = Math.min(this.clockChangeAt, report.clockChangeAt);
        if (report.actions) this.ctx.log.debug({ ...report, read: target?.read.length, created: target?.created.length }, 'convergence pass');
      })
      .catch((e) => {
        // the next pass, at the latest the next interval's, redoes the work (and more)
        this.full = true;
        this.clockChangeAt = -Infinity;
        if (e instanceof DroverError && e.kind === 'conflict') this.ctx.log.warn({ err: e.message }, 'convergence pass refused: no longer the leader');
        else this.ctx.log.error({ err: e }, 'convergence pass failed');
      })
      .finally(() => {
        this.running = false;
        if (this.again) {
          // changes that came in during the pass share the next one, a debounce later: a
          // full pass per commit would spend the CPU the writers need
          this.again = false;
          this.soon();
        }
      });
  }
}
