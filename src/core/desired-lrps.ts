// Use cases on desired state: desire, update (scale, routes, annotation), remove.

import { randomUUID } from 'node:crypto';
import { fail } from '../model/errors.js';
import type { Principal } from '../model/principal.js';
import { validateDesiredLrp, validateProcessGuid, validateUpdate } from '../model/validate.js';
import type { DesiredLrp, DesiredLrpUpdate } from '../model/lrp.js';
import type { StoreReads, StoreTx } from '../store/store.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext, type Emit } from './context.js';
import { maxInstancesOf } from './limits.js';
import { createActualLrp, stopActualLrp } from './actual-lrps.js';
import { requireChangeAllowed, requireServiceOpen } from './guards.js';

export async function loadDesiredLrp(tx: StoreReads, processGuid: string): Promise<DesiredLrp> {
  const d = await tx.getDesiredLrp(validateProcessGuid(processGuid));
  if (!d) fail('not_found', `desired LRP ${processGuid} not found`);
  return d;
}


function targetInstances(d: DesiredLrp): number {
  return d.enabled ? d.instances : 0;
}

/**
 * How many instances a desire or a scale creates with `d` (indexes 0 to this): every-cell LRPs
 * run one instance per eligible live cell, which the convergence planner sizes.
 */
export function instancesCreatedWith(d: DesiredLrp): number {
  return d.placement.strategy === 'every-cell' ? 0 : targetInstances(d);
}

/**
 * Creates each instance `d` wants at an index no instance holds: one still stopping there keeps
 * it until its cell removes it, and the planner then creates one.
 */
async function createInstances(tx: StoreTx, emit: Emit, d: DesiredLrp, now: number): Promise<void> {
  for (let index = 0; index < instancesCreatedWith(d); index++) await createActualLrp(tx, emit, { processGuid: d.processGuid, index, domain: d.domain }, now);
}

/** Make the actual instances match the desired count: create missing, stop extra. */
export async function reconcileInstances(tx: StoreTx, emit: Emit, d: DesiredLrp, now: number): Promise<void> {
  const target = targetInstances(d);
  if (d.placement.strategy === 'every-cell' && target > 0) return;
  await createInstances(tx, emit, d, now);
  for (const a of await tx.listActualLrps({ processGuid: d.processGuid })) {
    if (a.actualLrpKey.index >= target && !a.stopRequested) await stopActualLrp(tx, emit, a, now);
  }
}

export async function desireLrp(ctx: CoreContext, p: Principal | undefined, input: Partial<DesiredLrp> | undefined): Promise<DesiredLrp> {
  authorize(p, 'owner');
  const d = validateDesiredLrp(input, maxInstancesOf(ctx));
  d.modificationTag = { epoch: randomUUID(), index: 0 };
  return inTransaction(ctx, async (tx, emit) => {
    await requireServiceOpen(tx, d);
    await insertDesiredLrp(tx, emit, d, ctx.now());
    return d;
  });
}

/** Stores a new desired LRP and creates its instances, in the caller's transaction. */
export async function insertDesiredLrp(tx: StoreTx, emit: Emit, d: DesiredLrp, now: number): Promise<void> {
  await tx.insertDesiredLrp(d);
  await emit('desired_lrp_created', { desiredLrp: d });
  // Instances under a new LRP's guid can only be those of an earlier LRP of that guid, which
  // its removal asked to stop: nothing is left to stop, so none need reading.
  await createInstances(tx, emit, d, now);
}

/** Deletes a desired LRP in the caller's transaction: unstarted instances go now, running ones are stopped by their cells. */
export async function deleteDesiredLrp(tx: StoreTx, emit: Emit, d: DesiredLrp, now: number): Promise<void> {
  await tx.deleteDesiredLrp(d.processGuid);
  await emit('desired_lrp_removed', { desiredLrp: d });
  for (const a of await tx.listActualLrps({ processGuid: d.processGuid })) await stopActualLrp(tx, emit, a, now);
}

export async function updateDesiredLrp(
  ctx: CoreContext,
  p: Principal | undefined,
  processGuid: string,
  update: DesiredLrpUpdate | undefined,
  expectedTag?: number,
  force = false,
): Promise<DesiredLrp> {
  const caller = authorize(p, 'owner');
  const u = validateUpdate(update, maxInstancesOf(ctx));
  return inTransaction(ctx, async (tx, emit) => {
    const before = await loadDesiredLrp(tx, processGuid);
    if (expectedTag !== undefined && before.modificationTag.index !== expectedTag) {
      fail('conflict', `desired LRP ${processGuid} was modified (tag ${before.modificationTag.index}, expected ${expectedTag})`);
    }
    await requireChangeAllowed(ctx, tx, before, caller, force);
    const after = applyUpdate(before, u);
    await tx.updateDesiredLrp(after);
    await emit('desired_lrp_changed', { before, after });
    if (after.instances !== before.instances) await reconcileInstances(tx, emit, after, ctx.now());
    return after;
  });
}

export function applyUpdate(d: DesiredLrp, u: DesiredLrpUpdate): DesiredLrp {
  const instances = u.instances === undefined ? d.instances : d.placement.strategy === 'leader' ? Math.min(u.instances, 1) : u.instances;
  return {
    ...d,
    instances,
    routes: u.routes ?? d.routes,
    annotation: u.annotation ?? d.annotation,
    metricTags: u.metricTags ?? d.metricTags,
    modificationTag: { ...d.modificationTag, index: d.modificationTag.index + 1 },
  };
}

/** Removes the desired LRP: unstarted instances go now, running ones are stopped by their cells. */
export async function removeDesiredLrp(ctx: CoreContext, p: Principal | undefined, processGuid: string, force = false): Promise<void> {
  const caller = authorize(p, 'owner');
  await inTransaction(ctx, async (tx, emit) => {
    const d = await loadDesiredLrp(tx, processGuid);
    await requireChangeAllowed(ctx, tx, d, caller, force);
    await deleteDesiredLrp(tx, emit, d, ctx.now());
  });
}
