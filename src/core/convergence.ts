// Applies the convergence planner's actions. Each action re-reads its instance and goes
// through the state machine; if the instance moved since the snapshot (its tag changed),
// the action is skipped — the next pass sees the new state (level-triggered).

import { DroverError } from '../model/errors.js';
import { targetInstances, type PlanAction } from '../converge/planner.js';
import { transitionFor } from '../converge/transitions.js';
import type { StoreTx } from '../store/store.js';
import type { DesiredLrp } from '../model/lrp.js';
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
 * Applies a plan in chunks of one transaction each. `tags` holds the modification tag
 * index each instance had in the snapshot the plan was made from. With `fence` (a leader's
 * lease and epoch), each chunk commits only while that lease still holds: a deposed leader's
 * chunk fails with `conflict` and writes nothing.
 */
export async function applyPlan(ctx: CoreContext, plan: PlanAction[], tags: Map<string, number>, fence?: LeaseFence): Promise<ApplyResult> {
  const result: ApplyResult = { applied: 0, skipped: 0 };
  for (let i = 0; i < plan.length; i += CHUNK) {
    const chunk = plan.slice(i, i + CHUNK);
    await inTransaction(ctx, async (tx, emit) => {
      const stillWanted = wantedCheck(tx);
      const now = ctx.now();
      for (const action of chunk) {
        try {
          const a = await tx.getActualLrp(action.processGuid, action.index);
          if (action.kind === 'create') {
            if (!a && (await stillWanted(action.processGuid, action.index))) {
              await createActualLrp(tx, emit, { processGuid: action.processGuid, index: action.index, domain: action.domain }, now);
            } else result.skipped++;
            continue;
          }
          const tag = tags.get(`${action.processGuid}/${action.index}`);
          if (!a || a.modificationTag.index !== tag) {
            result.skipped++;
            continue;
          }
          if (action.kind === 'retire') await stopActualLrp(tx, emit, a, now);
          else await saveActualLrp(tx, emit, a, transitionFor(action, a, now));
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
