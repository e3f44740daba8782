// The convergence planner: a pure function from a state snapshot to the actions that bring
// the actual instances in line with the desired ones (BBS `lrp_convergence` plus Drover's
// placement). No I/O, no clock, no randomness: the same snapshot always gives the same plan.
//
// One pass, two phases:
//   1. per LRP (sorted by processGuid), per index: create / retire / restart / suspect /
//      unclaim / forgive, and collect the UNCLAIMED instances that need a cell;
//      at the same time count the load of every cell (instances that stay on or go to it).
//   2. per LRP in the same order: place the collected instances (spread, every-cell, leader),
//      counting each placement into the load as it goes.
// Choices worth knowing:
//   - At most one action per instance per pass (suspect, then unclaim, then place: three passes).
//   - The Era section rule is applied per site: a site where no live cell serves any of the
//     sections offers all its live cells.
//   - A leader instance is placed only while no other record of that LRP is CLAIMED/RUNNING
//     (an extra index being stopped, an evacuating copy), so a plan never starts a second one.
//   - EVACUATING records only count as load (and block a leader); the evacuation protocol
//     owns them. Active instances on live but no longer eligible cells are not moved.
// Cost: O(desired + actual) map work, plus O(cells log cells) per distinct placement
// constraint, plus O(log cells) per placement.

import type { ActualLrp, DesiredLrpPlanInfo, PlacementStrategy } from '../model/lrp.js';
import { cellAlive, type Cell } from '../model/cell.js';
import { DEFAULT_RESTART_POLICY, restartDelayMs, restartDue, restartPolicyFor, type RestartPolicy } from '../model/restart-policy.js';

export const DEFAULT_CLAIM_TIMEOUT_MS = 30_000;

export interface Snapshot {
  /** ms */
  now: number;
  desired: DesiredLrpPlanInfo[];
  actual: ActualLrp[];
  cells: Cell[];
  /** default DEFAULT_RESTART_POLICY */
  policy?: RestartPolicy;
  /** default 30_000: a CLAIMED instance that has not started by then is unclaimed */
  claimTimeoutMs?: number;
  /**
   * A targeted pass (some LRPs only): the instances of the other LRPs on each cell, which
   * placement counts as load next to those in `actual`. A full pass leaves it out.
   */
  otherLoad?: ReadonlyMap<string, number>;
}

export type PlanAction =
  | { kind: 'create'; processGuid: string; domain: string; index: number }
  | { kind: 'retire'; processGuid: string; index: number; reason: string }
  | { kind: 'restart'; processGuid: string; index: number }
  | { kind: 'suspect'; processGuid: string; index: number; cellId: string }
  | { kind: 'unsuspect'; processGuid: string; index: number }
  | { kind: 'unclaim'; processGuid: string; index: number; reason: string }
  | { kind: 'place'; processGuid: string; index: number; cellId: string }
  | { kind: 'fail_placement'; processGuid: string; index: number; reason: string }
  | { kind: 'forgive'; processGuid: string; index: number };

export type PlanActionKind = PlanAction['kind'];

/** The reason strings the planner puts in retire / unclaim / fail_placement actions. */
export const PLAN_REASONS = {
  orphan: 'orphan: no desired LRP',
  disabled: 'desired LRP disabled',
  extraIndex: 'extra index',
  stopRequested: 'stop requested',
  cellLost: 'cell lost',
  claimTimeout: 'claim timed out',
  noEligibleCell: 'no live eligible cell',
  everyCellFull: 'every eligible cell already runs an instance',
} as const;

// ---------------------------------------------------------------------------------------
// Eligibility

function byCellId(a: Cell, b: Cell): number {
  return a.cellId < b.cellId ? -1 : a.cellId > b.cellId ? 1 : 0;
}

function constraintsOf(d: DesiredLrpPlanInfo): { sites: string[]; sections: string[]; tags: string[] } {
  return { sites: d.placement?.sites ?? [], sections: d.placement?.sections ?? [], tags: d.placementTags ?? [] };
}

/**
 * The eligible cells among `live` (already alive, sorted by cellId; the order is kept).
 * Sites: the cell's site is listed (or no sites listed). Sections: the cell serves one of
 * them — except in a site where no live cell serves any of them, where every live cell of
 * that site is eligible (Era rule, applied per site). Tags: the cell has every tag.
 */
function filterEligible(sites: string[], sections: string[], tags: string[], live: Cell[]): Cell[] {
  let pool = live;
  if (sites.length > 0) {
    const siteSet = new Set(sites);
    pool = pool.filter((c) => siteSet.has(c.site));
  }
  if (sections.length > 0) {
    const sectionSet = new Set(sections);
    const serves = (c: Cell): boolean => (c.sections ?? []).some((s) => sectionSet.has(s));
    const servingSites = new Set<string>();
    for (const c of pool) if (serves(c)) servingSites.add(c.site);
    pool = pool.filter((c) => !servingSites.has(c.site) || serves(c));
  }
  if (tags.length > 0) {
    pool = pool.filter((c) => {
      const have = c.placementTags ?? [];
      return tags.every((t) => have.includes(t));
    });
  }
  return pool === live ? live.slice() : pool;
}

/** The live cells that may run `d`'s instances, sorted by cellId. */
export function eligibleCells(d: DesiredLrpPlanInfo, cells: Cell[], now: number): Cell[] {
  const live = cells.filter((c) => cellAlive(c, now)).sort(byCellId);
  const { sites, sections, tags } = constraintsOf(d);
  return filterEligible(sites, sections, tags, live);
}

/** How many instances `d` should have, given the number of live eligible cells. */
export function targetInstances(d: DesiredLrpPlanInfo, liveEligibleCells: number): number {
  if (d.enabled === false || !(d.instances > 0)) return 0;
  const strategy: PlacementStrategy = d.placement?.strategy ?? 'spread';
  if (strategy === 'every-cell') return liveEligibleCells;
  if (strategy === 'leader') return 1;
  return d.instances;
}

// ---------------------------------------------------------------------------------------
// A small binary min-heap

class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(x: T): void {
    const items = this.items;
    items.push(x);
    let i = items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(items[i]!, items[p]!)) break;
      [items[i], items[p]] = [items[p]!, items[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      this.down(0);
    }
    return top;
  }

  /** Replace the contents and restore the heap order in O(n). */
  heapify(xs: T[]): void {
    this.items.length = 0;
    for (const x of xs) this.items.push(x);
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(items[l]!, items[m]!)) m = l;
      if (r < n && this.less(items[r]!, items[m]!)) m = r;
      if (m === i) return;
      [items[i], items[m]] = [items[m]!, items[i]!];
      i = m;
    }
  }
}

interface LoadEntry {
  id: string;
  load: number;
}

interface TouchedEntry {
  id: string;
  load: number;
  /** instances of the LRP being placed on this cell */
  same: number;
}

const lessLoad = (a: LoadEntry, b: LoadEntry): boolean => a.load < b.load || (a.load === b.load && a.id < b.id);
const lessTouched = (a: TouchedEntry, b: TouchedEntry): boolean =>
  a.load < b.load || (a.load === b.load && (a.same < b.same || (a.same === b.same && a.id < b.id)));

/** The live eligible cells for one placement constraint, shared by every LRP that has it. */
interface Group {
  cells: Cell[];
  ids: Set<string>;
  /** cells by (load, cellId), built at the start of placement; lazily invalidated entries */
  heap?: Heap<LoadEntry>;
}

/** An LRP with instances to place in phase 2. */
interface Pending {
  guid: string;
  strategy: PlacementStrategy;
  group: Group;
  /** leader: some instance is CLAIMED/RUNNING, so nothing may be placed */
  leaderBlocked: boolean;
  // Ranges in the pass-wide arrays (fewer small allocations at 100k LRPs):
  /** the UNCLAIMED instances that need a cell, in index order: toPlace[tpStart, tpEnd) */
  tpStart: number;
  tpEnd: number;
  /** the cells this LRP's staying instances are on or targeted to: counted[cStart, cEnd) */
  cStart: number;
  cEnd: number;
  /** this LRP's phase-1 actions: out[start, end) */
  start: number;
  end: number;
  /** its phase-2 actions, in index order: placed[pStart, pEnd) */
  pStart: number;
  pEnd: number;
}

function isActiveState(a: { state: ActualLrp['state'] }): boolean {
  return a.state === 'CLAIMED' || a.state === 'RUNNING';
}

/** The cell an instance not asked to stop counts against as load ('' for none). */
export function loadCellOf(a: { state: ActualLrp['state']; cellId: string; targetCellId: string }): string {
  return isActiveState(a) ? a.cellId : a.state === 'UNCLAIMED' ? a.targetCellId : '';
}

const byIndex = (x: ActualLrp, y: ActualLrp): number => x.actualLrpKey.index - y.actualLrpKey.index;

/** Two sorted string lists merged into one (code-unit order, as Array.prototype.sort). */
function mergeSorted(a: string[], b: string[]): string[] {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out: string[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = a[i]! <= b[j]! ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

const NO_ACTUALS: ActualLrp[] = [];

// ---------------------------------------------------------------------------------------
// The planner

export function plan(snapshot: Snapshot): PlanAction[] {
  const now = snapshot.now;
  const policy = snapshot.policy ?? DEFAULT_RESTART_POLICY;
  const claimTimeoutMs = snapshot.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS;

  // Cells: the live ones by id, and sorted by id.
  const liveById = new Map<string, Cell>();
  for (const c of snapshot.cells) if (cellAlive(c, now)) liveById.set(c.cellId, c);
  const live = [...liveById.values()].sort(byCellId);

  const groups = new Map<string, Group>();
  const groupOf = (d: DesiredLrpPlanInfo): Group => {
    const { sites, sections, tags } = constraintsOf(d);
    const key = sites.length + sections.length + tags.length === 0 ? '' : `${sites.join('\x1f')}\x1e${sections.join('\x1f')}\x1e${tags.join('\x1f')}`;
    let g = groups.get(key);
    if (!g) {
      const cells = filterEligible(sites, sections, tags, live);
      g = { cells, ids: new Set(cells.map((c) => c.cellId)) };
      groups.set(key, g);
    }
    return g;
  };

  // Index the snapshot; every processGuid (desired or not) in sorted order.
  const desiredBy = new Map<string, DesiredLrpPlanInfo>();
  for (const d of snapshot.desired) desiredBy.set(d.processGuid, d);
  // (a lone instance is stored as itself: most LRPs at scale have one)
  const actualBy = new Map<string, ActualLrp | ActualLrp[]>();
  for (const a of snapshot.actual) {
    const guid = a.actualLrpKey.processGuid;
    const got = actualBy.get(guid);
    if (got === undefined) actualBy.set(guid, a);
    else if (Array.isArray(got)) got.push(a);
    else actualBy.set(guid, [got, a]);
  }
  const orphans: string[] = [];
  for (const g of actualBy.keys()) if (!desiredBy.has(g)) orphans.push(g);
  const guids = mergeSorted([...desiredBy.keys()].sort(), orphans.sort());

  // Load per cell: instances that stay on it or are targeted to it (any LRP), not retiring.
  const load = new Map<string, number>(snapshot.otherLoad);
  const addLoad = (cellId: string): void => {
    load.set(cellId, (load.get(cellId) ?? 0) + 1);
  };

  // ---- phase 1 ------------------------------------------------------------------------
  const out: PlanAction[] = [];
  const pending: Pending[] = [];

  // The LRP being looked at (reused across LRPs: no per-LRP closures).
  let guid = '';
  let d: DesiredLrpPlanInfo | undefined;
  let enabled = false;
  let target = 0;
  let group: Group | undefined;
  const toPlace: ActualLrp[] = [];
  const counted: string[] = [];
  const one: ActualLrp[] = [];

  const currentGroup = (): Group => (group ??= groupOf(d!));
  const count = (cellId: string): void => {
    if (!cellId) return;
    addLoad(cellId);
    counted.push(cellId);
  };
  const create = (index: number): void => {
    out.push({ kind: 'create', processGuid: guid, domain: d!.domain, index });
  };
  const decide = (a: ActualLrp, i: number): void => {
    const retireReason = !d
      ? PLAN_REASONS.orphan
      : !enabled
        ? PLAN_REASONS.disabled
        : !Number.isInteger(i) || i < 0 || i >= target
          ? PLAN_REASONS.extraIndex
          : '';
    if (a.stopRequested) {
      // The cell is stopping it; an instance no cell holds is deleted by the applier.
      if (a.state === 'UNCLAIMED' || a.state === 'CRASHED') {
        out.push({ kind: 'retire', processGuid: guid, index: i, reason: retireReason || PLAN_REASONS.stopRequested });
      }
      return;
    }
    if (retireReason) {
      out.push({ kind: 'retire', processGuid: guid, index: i, reason: retireReason });
      return;
    }
    switch (a.state) {
      case 'CRASHED':
        if (restartDue(a.crashCount, a.since, now, restartPolicyFor(d!.restart, a.crashReason, policy))) out.push({ kind: 'restart', processGuid: guid, index: i });
        return;
      case 'UNCLAIMED': {
        const t = a.targetCellId;
        if (t && liveById.has(t) && currentGroup().ids.has(t)) count(t);
        else toPlace.push(a);
        return;
      }
      case 'CLAIMED':
      case 'RUNNING': {
        const cellId = a.actualLrpInstanceKey.cellId;
        if (!liveById.has(cellId)) {
          if (a.presence === 'ORDINARY') out.push({ kind: 'suspect', processGuid: guid, index: i, cellId });
          else if (a.presence === 'SUSPECT' && currentGroup().cells.length > 0) {
            out.push({ kind: 'unclaim', processGuid: guid, index: i, reason: PLAN_REASONS.cellLost });
          }
          return;
        }
        if (a.presence === 'SUSPECT') {
          // its cell is back (and still has it): it is an ordinary instance again, as in BBS
          count(cellId);
          out.push({ kind: 'unsuspect', processGuid: guid, index: i });
          return;
        }
        if (a.state === 'CLAIMED' && now - a.since >= claimTimeoutMs) {
          out.push({ kind: 'unclaim', processGuid: guid, index: i, reason: PLAN_REASONS.claimTimeout });
          return;
        }
        count(cellId);
        if (a.state === 'RUNNING' && a.crashCount > 0 && now - a.since >= policy.crashResetMs) {
          out.push({ kind: 'forgive', processGuid: guid, index: i });
        }
        return;
      }
    }
  };

  for (const g of guids) {
    guid = g;
    d = desiredBy.get(g);
    const got = actualBy.get(g);
    let recs = NO_ACTUALS;
    if (Array.isArray(got)) recs = got;
    else if (got !== undefined) {
      one[0] = got;
      recs = one;
    }
    const strategy: PlacementStrategy = d?.placement?.strategy ?? 'spread';
    enabled = d !== undefined && d.enabled !== false;
    group = undefined;
    const tpStart = toPlace.length;
    const cStart = counted.length;
    target = d && enabled && d.instances > 0 ? targetInstances(d, strategy === 'every-cell' ? currentGroup().cells.length : 0) : 0;
    const start = out.length;
    let leaderBlocked = false;

    // Walk the indices in order, creating the missing ones below the target. Per index the
    // first non-evacuating record decides; any other (evacuating, duplicate) only counts as load.
    const sorted = recs.length > 1 ? recs.slice().sort(byIndex) : recs;
    let next = 0;
    for (let k = 0; k < sorted.length; ) {
      const i = sorted[k]!.actualLrpKey.index;
      let primary: ActualLrp | undefined;
      do {
        const a = sorted[k]!;
        if (isActiveState(a)) leaderBlocked = true;
        if (!primary && a.presence !== 'EVACUATING') primary = a;
        else if (!a.stopRequested) count(loadCellOf({ state: a.state, cellId: a.actualLrpInstanceKey.cellId, targetCellId: a.targetCellId }));
        k++;
      } while (k < sorted.length && sorted[k]!.actualLrpKey.index === i);
      if (!primary) continue;
      for (; next < target && next < i; next++) create(next);
      if (i + 1 > next) next = i + 1;
      decide(primary, i);
    }
    for (; next < target; next++) create(next);

    if (toPlace.length > tpStart) {
      pending.push({
        guid,
        strategy,
        group: currentGroup(),
        leaderBlocked: strategy === 'leader' && leaderBlocked,
        tpStart,
        tpEnd: toPlace.length,
        cStart,
        cEnd: counted.length,
        start,
        end: out.length,
        pStart: 0,
        pEnd: 0,
      });
    } else {
      counted.length = cStart; // only LRPs with placements need their cells
    }
  }

  // ---- phase 2: placement -------------------------------------------------------------
  const groupsOfCell = new Map<string, Group[]>();
  const ensureHeap = (g: Group): Heap<LoadEntry> => {
    if (!g.heap) {
      g.heap = new Heap(lessLoad);
      g.heap.heapify(g.cells.map((c) => ({ id: c.cellId, load: load.get(c.cellId) ?? 0 })));
      for (const c of g.cells) {
        const list = groupsOfCell.get(c.cellId);
        if (list) list.push(g);
        else groupsOfCell.set(c.cellId, [g]);
      }
    }
    return g.heap;
  };

  // Scratch state reused for every LRP placed.
  let cur: Pending | undefined; // the LRP being placed
  const placed: PlanAction[] = [];
  const changed = new Set<string>();
  const same = new Map<string, number>();
  const touched = new Heap<TouchedEntry>(lessTouched);
  const skipped: string[] = [];
  const fail = (a: ActualLrp, reason: string): void => {
    if (a.placementError !== reason) placed.push({ kind: 'fail_placement', processGuid: cur!.guid, index: a.actualLrpKey.index, reason });
  };
  const put = (a: ActualLrp, cellId: string): void => {
    placed.push({ kind: 'place', processGuid: cur!.guid, index: a.actualLrpKey.index, cellId });
    addLoad(cellId);
    changed.add(cellId);
  };

  for (const w of pending) {
    cur = w;
    w.pStart = placed.length;
    placeOne(w);
    w.pEnd = placed.length;
  }

  function placeOne(w: Pending): void {
    const g = w.group;
    if (g.cells.length === 0) {
      for (let k = w.tpStart; k < w.tpEnd; k++) fail(toPlace[k]!, PLAN_REASONS.noEligibleCell);
      return;
    }
    if (changed.size > 0) changed.clear();
    // This LRP's instances per eligible cell.
    if (same.size > 0) same.clear();
    for (let k = w.cStart; k < w.cEnd; k++) {
      const id = counted[k]!;
      if (g.ids.has(id)) same.set(id, (same.get(id) ?? 0) + 1);
    }

    if (w.strategy === 'leader') {
      // Only index 0 is ever kept, and never placed while another instance may still run.
      if (!w.leaderBlocked) put(toPlace[w.tpStart]!, g.cells[0]!.cellId);
    } else if (w.strategy === 'every-cell') {
      let k = w.tpStart;
      for (const c of g.cells) {
        if (k >= w.tpEnd) break;
        if (!same.has(c.cellId)) put(toPlace[k++]!, c.cellId);
      }
      for (; k < w.tpEnd; k++) fail(toPlace[k]!, PLAN_REASONS.everyCellFull);
    } else {
      // spread: the best cell is either the least loaded cell without this LRP (shared heap)
      // or the best of the cells that already have some (this LRP's own heap).
      const heap = ensureHeap(g);
      const entries: TouchedEntry[] = [];
      for (const [id, n] of same) entries.push({ id, load: load.get(id) ?? 0, same: n });
      touched.heapify(entries);
      skipped.length = 0;
      for (let k = w.tpStart; k < w.tpEnd; k++) {
        const a = toPlace[k]!;
        let best: LoadEntry | undefined;
        while (heap.size > 0) {
          const top = heap.peek()!;
          if ((load.get(top.id) ?? 0) !== top.load) heap.pop(); // stale
          else if (same.has(top.id)) skipped.push(heap.pop()!.id); // compared through `touched`
          else {
            best = top;
            break;
          }
        }
        const t = touched.peek();
        if (best && (!t || t.load > best.load || (t.load === best.load && (t.same > 0 || t.id > best.id)))) {
          heap.pop();
          put(a, best.id);
          same.set(best.id, 1);
          touched.push({ id: best.id, load: best.load + 1, same: 1 });
        } else if (t) {
          touched.pop();
          put(a, t.id);
          same.set(t.id, t.same + 1);
          touched.push({ id: t.id, load: t.load + 1, same: t.same + 1 });
        } else {
          fail(a, PLAN_REASONS.noEligibleCell); // unreachable: the group is not empty
        }
      }
      for (const id of skipped) if (!changed.has(id)) heap.push({ id, load: load.get(id) ?? 0 });
    }
    // Keep every built heap current for the cells whose load grew.
    for (const id of changed) {
      const list = groupsOfCell.get(id);
      if (list) for (const other of list) other.heap!.push({ id, load: load.get(id) ?? 0 });
    }
  }

  // ---- output: phase-1 actions, with each LRP's placements merged in by index ---------
  if (pending.length === 0) return out;
  const result: PlanAction[] = [];
  let pos = 0;
  for (const w of pending) {
    while (pos < w.start) result.push(out[pos++]!);
    let j = w.pStart;
    while (pos < w.end || j < w.pEnd) {
      if (j >= w.pEnd || (pos < w.end && out[pos]!.index <= placed[j]!.index)) result.push(out[pos++]!);
      else result.push(placed[j++]!);
    }
  }
  while (pos < out.length) result.push(out[pos++]!);
  return result;
}

// ---------------------------------------------------------------------------------------
// When the clock alone changes the plan

/**
 * The earliest time (ms, the snapshot's clock) at which `plan` could give more for this
 * snapshot with only the clock moved on; Infinity if never. The clock changes a plan in four
 * places: a live cell going silent, a CRASHED instance's back-off ending, a CLAIMED one's
 * claim timing out, a RUNNING one's crash count being forgiven. Conservative: an instance
 * the plan would retire anyway may still give a time (an early pass plans nothing new).
 */
export function nextClockChange(snapshot: Snapshot): number {
  const policy = snapshot.policy ?? DEFAULT_RESTART_POLICY;
  const claimTimeoutMs = snapshot.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS;
  let next = Infinity;
  for (const c of snapshot.cells) if (cellAlive(c, snapshot.now)) next = Math.min(next, c.heartbeatAt + c.ttlMs + 1);
  // only a CRASHED instance needs its LRP (its restart policy): most passes meet none
  let desiredBy: Map<string, DesiredLrpPlanInfo> | undefined;
  for (const a of snapshot.actual) {
    if (a.stopRequested) continue;
    if (a.state === 'CRASHED') {
      desiredBy ??= new Map(snapshot.desired.map((d) => [d.processGuid, d]));
      const d = desiredBy.get(a.actualLrpKey.processGuid);
      const p = d && restartPolicyFor(d.restart, a.crashReason, policy);
      if (p && a.crashCount < p.maxRestarts) next = Math.min(next, a.since + restartDelayMs(a.crashCount, p));
    } else if (a.state === 'CLAIMED') next = Math.min(next, a.since + claimTimeoutMs);
    else if (a.state === 'RUNNING' && a.crashCount > 0) next = Math.min(next, a.since + policy.crashResetMs);
  }
  return next;
}
