// Applies the convergence planner's actions through the state machine; if the instance moved
// since the snapshot (its tag changed), the action is skipped — the next pass sees the new
// state (level-triggered). A transition starts from the snapshot's copy and writes with a
// compare-and-set on its tag, which is the check a re-read would make; a create inserts only
// where no instance holds the index, and a retire re-reads (a delete has no tag to compare).

import { DroverError } from '../model/errors.js';
import { targetInstances, type PlanAction } from '../converge/planner.js';
import { transitionFor } from '../converge/transitions.js';
import type { StoreTx } from '../store/store.js';
import type { ActualLrp, DesiredLrp } from '../model/lrp.js';
import { inTransaction, type CoreContext, type Emit } from './context.js';
import { createActualLrp, saveActualLrp, stopActualLrp } from './actual-lrps.js';
import type { LeaseFence } from '../store/lease.js';

const CHUNK = 500;

/**
 * A create re-reads its desired LRP: a remove or scale-down committed after the snapshot
 * must not get an instance back. (every-cell instances are counted per cell by the planner.)
 * One read per LRP per transaction: its creates come together in the plan.
 */
function wantedCheck(tx: StoreTx): (processGuid: string, index: number) => Promise<boolean> {
  const desired = new Map<string, Promise<DesiredLrp | undefined>>();
  return async (processGuid, index) => {
    let read = desired.get(processGuid);
    if (!read) desired.set(processGuid, (read = tx.getDesiredLrp(processGuid)));
    const d = await read;
    if (!d || d.enabled === false) return false;
    return d.placement?.strategy === 'every-cell' || index < targetInstances(d, 0);
  };
}

export interface ApplyResult {
  applied: number;
  skipped: number;
}

/**
 * Told, right after each chunk commits (before its announcement, which waits for the next
 * turn of the event loop), of the LRPs whose every action in the chunk was an applied
 * `fail_placement`, with how many events the chunk wrote for each. The planner leaves such an
 * LRP alone until something else changes it (or a cell comes), so the announcement of exactly
 * these events needs no pass (see ConvergenceLoop).
 */
export type OnSettled = (settled: Map<string, number>) => void;

type Outcome = 'applied' | 'created' | 'skipped';

/** One action in the chunk's transaction. */
async function applyAction(tx: StoreTx, emit: Emit, action: PlanAction, seen: Map<string, ActualLrp>, stillWanted: ReturnType<typeof wantedCheck>, now: number): Promise<Outcome> {
  try {
    if (action.kind === 'create') {
      if (!(await stillWanted(action.processGuid, action.index))) return 'skipped';
      return (await createActualLrp(tx, emit, { processGuid: action.processGuid, index: action.index, domain: action.domain }, now)) ? 'created' : 'skipped';
    }
    const before = seen.get(`${action.processGuid}/${action.index}`);
    if (!before) return 'skipped';
    if (action.kind === 'retire') {
      const a = await tx.getActualLrp(action.processGuid, action.index);
      if (!a || a.modificationTag.index !== before.modificationTag.index) return 'skipped';
      await stopActualLrp(tx, emit, a, now);
    } else await saveActualLrp(tx, emit, before, transitionFor(action, before, now)); // a moved instance fails the compare-and-set: skipped below
    return 'applied';
  } catch (e) {
    // A refused transition means the world moved on; the next pass replans from it.
    if (!(e instanceof DroverError)) throw e;
    return 'skipped';
  }
}

/**
 * Applies a plan in chunks of one transaction each. `seen` holds each planned instance as it
 * was in the snapshot the plan was made from, by `processGuid/index`. With `fence` (a leader's
 * lease and epoch), each chunk commits only while that lease still holds: a deposed leader's
 * chunk fails with `conflict` and writes nothing.
 */
export async function applyPlan(ctx: CoreContext, plan: PlanAction[], seen: Map<string, ActualLrp>, fence?: LeaseFence, onSettled?: OnSettled): Promise<ApplyResult> {
  const result: ApplyResult = { applied: 0, skipped: 0 };
  for (let i = 0; i < plan.length; i += CHUNK) {
    const chunk = plan.slice(i, i + CHUNK);
    // what the committed run of the chunk did (a run may be repeated: see Store.transaction)
    const run = await inTransaction(ctx, async (tx, emit) => {
      const stillWanted = wantedCheck(tx);
      const now = ctx.now();
      const outcomes: Outcome[] = [];
      const eventsOf = new Map<string, number>();
      let current = '';
      const counted: Emit = async (type, payload) => {
        await emit(type, payload);
        eventsOf.set(current, (eventsOf.get(current) ?? 0) + 1);
      };
      for (const action of chunk) {
        current = action.processGuid;
        outcomes.push(await applyAction(tx, counted, action, seen, stillWanted, now));
      }
      return { outcomes, eventsOf };
    }, { fence });
    const unsettled = new Set<string>();
    chunk.forEach((action, j) => {
      const outcome = run.outcomes[j];
      if (outcome === 'applied') result.applied++;
      else if (outcome === 'skipped') result.skipped++;
      if (outcome !== 'applied' || action.kind !== 'fail_placement') unsettled.add(action.processGuid);
    });
    for (const guid of unsettled) run.eventsOf.delete(guid);
    onSettled?.(run.eventsOf);
  }
  return result;
}
