// The convergence loop: snapshot the store, plan, apply. Runs on an interval and soon after
// any committed change; never two passes at once; only while this replica leads.

import type { CoreContext } from '../core/context.js';
import { applyPlan } from '../core/convergence.js';
import { plan, type Snapshot } from './planner.js';
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
  snapshotMs: number;
  planMs: number;
  applyMs: number;
}

export async function snapshot(ctx: CoreContext, claimTimeoutMs?: number): Promise<Snapshot> {
  // Actual LRPs first: the reads are not one snapshot, and a desire committed between them
  // must look like missing instances (creates the applier skips), never like orphans to retire.
  const actual = await ctx.store.listActualLrps();
  const [desired, cells] = await Promise.all([ctx.store.listDesiredLrps(), ctx.store.listCells()]);
  return { now: ctx.now(), desired, actual, cells, claimTimeoutMs };
}

export async function convergeOnce(ctx: CoreContext, claimTimeoutMs?: number, fence?: LeaseFence): Promise<PassReport> {
  const t0 = performance.now();
  const snap = await snapshot(ctx, claimTimeoutMs);
  const t1 = performance.now();
  const actions = plan(snap);
  const t2 = performance.now();
  const tags = new Map(snap.actual.map((a) => [`${a.actualLrpKey.processGuid}/${a.actualLrpKey.index}`, a.modificationTag.index]));
  const { applied } = actions.length ? await applyPlan(ctx, actions, tags, fence) : { applied: 0 };
  const t3 = performance.now();
  return { actions: actions.length, applied, snapshotMs: t1 - t0, planMs: t2 - t1, applyMs: t3 - t2 };
}

export class ConvergenceLoop {
  private timer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private running = false;
  private again = false;
  private stopped = false;
  private readonly onCommit = () => this.soon();
  lastPass?: PassReport;

  constructor(
    private readonly ctx: CoreContext,
    private readonly opts: ConvergenceOptions,
  ) {}

  start(): void {
    this.ctx.bus.on('committed', this.onCommit);
    this.timer = setInterval(() => this.trigger(), this.opts.intervalMs);
    this.trigger();
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
      this.trigger();
    }, this.opts.debounceMs);
  }

  trigger(): void {
    if (this.stopped || !this.opts.isLeader()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    convergeOnce(this.ctx, this.opts.claimTimeoutMs, this.opts.fence?.())
      .then((report) => {
        this.lastPass = report;
        if (report.actions) this.ctx.log.debug(report, 'convergence pass');
      })
      .catch((e) =>
        e instanceof DroverError && e.kind === 'conflict'
          ? this.ctx.log.warn({ err: e.message }, 'convergence pass refused: no longer the leader')
          : this.ctx.log.error({ err: e }, 'convergence pass failed'),
      )
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
