// Use cases a cell drives (claim, start, crash, fail, remove) and retire, which anyone with
// the owner role may ask for. Each is one transition of the ActualLRP state machine.

import { checkRemovable, claim, crash, failPlacement, start } from '../model/actual-lrp-machine.js';
import type { Principal } from '../model/principal.js';
import type { ActualLrpInstanceKey, ActualLrpKey, ActualLrpNetInfo } from '../model/lrp.js';
import { EMPTY_NET_INFO } from '../model/actual-lrp-machine.js';
import { validateProcessGuid } from '../model/validate.js';
import { fail } from '../model/errors.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext } from './context.js';
import { deleteActualLrp, loadActualLrp, saveActualLrp, stopActualLrp } from './actual-lrps.js';

function requireKey(key: Partial<ActualLrpKey> | undefined): ActualLrpKey {
  if (!key) fail('invalid_request', 'actual_lrp_key is required');
  const processGuid = validateProcessGuid(key.processGuid);
  const index = key.index ?? 0;
  if (!Number.isInteger(index) || index < 0) fail('invalid_request', 'index must be a non-negative integer');
  return { processGuid, index, domain: key.domain ?? '' };
}

function requireInstanceKey(k: Partial<ActualLrpInstanceKey> | undefined): ActualLrpInstanceKey {
  if (!k?.instanceGuid || !k.cellId) fail('invalid_request', 'actual_lrp_instance_key with instance_guid and cell_id is required');
  return { instanceGuid: k.instanceGuid, cellId: k.cellId };
}

export async function claimActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey>, instanceKey: Partial<ActualLrpInstanceKey> | undefined, expectedTag?: number) {
  authorize(p, 'agent');
  const k = requireKey(key);
  const ik = requireInstanceKey(instanceKey);
  return inTransaction(ctx, async (tx, emit) => {
    const a = await loadActualLrp(tx, k.processGuid, k.index, expectedTag);
    return saveActualLrp(tx, emit, a, claim(a, ik, ctx.now()));
  });
}

export async function startActualLrp(
  ctx: CoreContext,
  p: Principal | undefined,
  key: Partial<ActualLrpKey> | undefined,
  instanceKey: Partial<ActualLrpInstanceKey> | undefined,
  netInfo: ActualLrpNetInfo | undefined,
  expectedTag?: number,
) {
  authorize(p, 'agent');
  const k = requireKey(key);
  const ik = requireInstanceKey(instanceKey);
  return inTransaction(ctx, async (tx, emit) => {
    const a = await loadActualLrp(tx, k.processGuid, k.index, expectedTag);
    return saveActualLrp(tx, emit, a, start(a, ik, netInfo ?? EMPTY_NET_INFO, ctx.now()));
  });
}

export async function crashActualLrp(
  ctx: CoreContext,
  p: Principal | undefined,
  key: Partial<ActualLrpKey> | undefined,
  instanceKey: Partial<ActualLrpInstanceKey> | undefined,
  reason: string,
  expectedTag?: number,
) {
  authorize(p, 'agent');
  const k = requireKey(key);
  const ik = requireInstanceKey(instanceKey);
  return inTransaction(ctx, async (tx, emit) => {
    const a = await loadActualLrp(tx, k.processGuid, k.index, expectedTag);
    const after = crash(a, ik, reason, ctx.now());
    await emit('actual_lrp_crashed', {
      actualLrpKey: after.actualLrpKey,
      actualLrpInstanceKey: ik,
      crashCount: after.crashCount,
      crashReason: reason,
      since: after.since,
    });
    return saveActualLrp(tx, emit, a, after);
  });
}

export async function failActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey> | undefined, reason: string, expectedTag?: number) {
  authorize(p, 'agent');
  const k = requireKey(key);
  return inTransaction(ctx, async (tx, emit) => {
    const a = await loadActualLrp(tx, k.processGuid, k.index, expectedTag);
    return saveActualLrp(tx, emit, a, failPlacement(a, reason, ctx.now()));
  });
}

/** The cell stopped the instance (or never started it): the record goes away. */
export async function removeActualLrp(
  ctx: CoreContext,
  p: Principal | undefined,
  key: Partial<ActualLrpKey>,
  instanceKey: Partial<ActualLrpInstanceKey> | undefined,
  expectedTag?: number,
) {
  authorize(p, 'agent');
  const k = requireKey(key);
  await inTransaction(ctx, async (tx, emit) => {
    const a = await loadActualLrp(tx, k.processGuid, k.index, expectedTag);
    checkRemovable(a, instanceKey ? { instanceGuid: instanceKey.instanceGuid ?? '', cellId: instanceKey.cellId ?? '' } : { instanceGuid: '', cellId: '' });
    await deleteActualLrp(tx, emit, a);
  });
}

/** Stops one instance without touching the desired state; convergence then replaces it. */
export async function retireActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey> | undefined, expectedTag?: number) {
  authorize(p, 'owner');
  const k = requireKey(key);
  await inTransaction(ctx, async (tx, emit) => {
    const a = await loadActualLrp(tx, k.processGuid, k.index, expectedTag);
    await stopActualLrp(tx, emit, a, ctx.now());
  });
}
