// Operator actions the other use cases do not cover: turning a desired LRP off and on again
// (e.g. after the crash-loop guard disabled it). Protocol-free; the dashboard calls it first.

import { fail } from '../model/errors.js';
import type { DesiredLrp } from '../model/lrp.js';
import type { Principal } from '../model/principal.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext } from './context.js';
import { loadDesiredLrp, reconcileInstances } from './desired-lrps.js';
import { requireChangeAllowed } from './guards.js';

/**
 * Disabling stops every instance but keeps the desired LRP and the reason; enabling clears
 * the reason and recreates the instances (fresh, so no crash history carries over).
 */
export async function setDesiredLrpEnabled(ctx: CoreContext, p: Principal | undefined, processGuid: string, enabled: boolean, reason = '', force = false): Promise<DesiredLrp> {
  const caller = authorize(p, 'owner');
  return inTransaction(ctx, async (tx, emit) => {
    const before = await loadDesiredLrp(tx, processGuid);
    await requireChangeAllowed(ctx, tx, before, caller, force);
    if (before.enabled === enabled) return before;
    // A terminating service disables its LRPs to stop them; enabling one would fight that.
    const service = before.serviceId ? await tx.getService(before.serviceId) : undefined;
    if (enabled && (service?.state === 'TERMINATING' || service?.state === 'TERMINATED')) {
      fail('invalid_transition', `service ${service.id} of ${processGuid} is ${service.state}`);
    }
    const after: DesiredLrp = {
      ...before,
      enabled,
      disabledReason: enabled ? '' : reason.trim() || `disabled by ${caller.name}`,
      modificationTag: { ...before.modificationTag, index: before.modificationTag.index + 1 },
    };
    await tx.updateDesiredLrp(after);
    await emit('desired_lrp_changed', { before, after });
    await reconcileInstances(tx, emit, after, ctx.now());
    return after;
  });
}
