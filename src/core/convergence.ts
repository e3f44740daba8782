// Applies the convergence planner's actions through the state machine; if the instance moved
// since the snapshot (its tag changed), the action is skipped — the next pass sees the new
// state (level-triggered). A transition starts from the snapshot's copy and writes with a
// compare-and-set on its tag, which is the check a re-read would make; creates and retires
// re-read (an insert or a delete has no tag to compare).

import { DroverError } from '../model/errors.js';
import { targetInstances, type PlanAction } from '../converge/planner.js';
import { transitionFor } from '../converge/transitions.js';
import type { StoreTx } from '../store/store.js';
import type { ActualLrp, DesiredLrp } from '../model/lrp.js';
import { inTransaction, type CoreContext } from './context.js';
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
 * Applies a plan in chunks of one transaction each. `seen` holds each planned instance as it
 * was in the snapshot the plan was made from, by `processGuid/index`. With `fence` (a leader's
 * lease and epoch), each chunk commits only while that lease still holds: a deposed leader's
 * chunk fails with `conflict` and writes nothing.
 */
export async function applyPlan(ctx: CoreContext, plan: PlanAction[], seen: Map<string, ActualLrp>, fence?: LeaseFence): Promise<ApplyResult> {
  const result: ApplyResult = { applied: 0, skipped: 0 };
  for (let i = 0; i < plan.length; i += CHUNK) {
    const chunk = plan.slice(i, i + CHUNK);
    await inTransaction(ctx, async (tx, emit) => {
      const stillWanted = wantedCheck(tx);
      const now = ctx.now();
      for (const action of chunk) {
        try {
          if (action.kind === 'create') {
            const a = await tx.getActualLrp(action.processGuid, action.index);
            if (!a && (await stillWanted(action.processGuid, action.index))) {
              await createActualLrp(tx, emit, { processGuid: action.processGuid, index: action.index, domain: action.domain }, now);
            } else result.skipped++;
            continue;
          }
          const before = seen.get(`${action.processGuid}/${action.index}`);
          if (!before) {
            result.skipped++;
            continue;
          }
          if (action.kind === 'retire') {
            const a = await tx.getActualLrp(action.processGuid, action.index);
            if (!a || a.modificationTag.index !== before.modificationTag.index) {
              result.skipped++;
              continue;
            }
            await stopActualLrp(tx, emit, a, now);
          } else await saveActualLrp(tx, emit, before, transitionFor(action, before, now)); // a moved instance fails the compare-and-set: skipped below
          result.applied++;
        } catch (e) {
          // A refused transition means the world moved on; the next pass replans from it.
          if (!(e instanceof DroverError)) throw e;
          result.skipped++;
        }
      }
    }, { fence });
  }
  return result;
}
