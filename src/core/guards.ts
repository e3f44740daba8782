// Who may change a desired LRP right now: not while its service is shut down, and not while
// someone else holds a lock on it — unless an operator forces it, which is logged.

import { fail } from '../model/errors.js';
import { serviceInstanceIdOf } from '../model/lock.js';
import type { DesiredLrp } from '../model/lrp.js';
import { hasRole, type Principal } from '../model/principal.js';
import type { StoreTx } from '../store/store.js';
import type { CoreContext } from './context.js';
import { lockHeldByOther } from './locks.js';

/** A desired LRP of a shut-down service is frozen until an operator restores it. */
export async function requireServiceOpen(tx: StoreTx, d: DesiredLrp): Promise<void> {
  if (!d.serviceId) return;
  const service = await tx.getService(d.serviceId);
  if (service?.shutdown) fail('shut_down', `service ${service.id} of ${d.processGuid} is shut down`);
}

export async function requireUnlocked(ctx: CoreContext, tx: StoreTx, d: DesiredLrp, caller: Principal, force = false): Promise<void> {
  const lock = await lockHeldByOther(tx, serviceInstanceIdOf(d), caller.name, ctx.now());
  if (!lock) return;
  if (force && hasRole(caller, 'operator')) {
    ctx.log.warn({ processGuid: d.processGuid, lockOwner: lock.owner, operator: caller.name }, 'lock overridden by an operator');
    return;
  }
  fail('locked', `${serviceInstanceIdOf(d)} is locked by ${lock.owner} until ${new Date(lock.expiresAt).toISOString()}`);
}

/** Both checks, for every change to an existing desired LRP. */
export async function requireChangeAllowed(ctx: CoreContext, tx: StoreTx, d: DesiredLrp, caller: Principal, force = false): Promise<void> {
  await requireServiceOpen(tx, d);
  await requireUnlocked(ctx, tx, d, caller, force);
}
