// ActualLRP persistence helpers: every change goes through the state machine's result and a
// compare-and-set on the modification tag, and announces itself.

import { fail } from '../model/errors.js';
import { checkTag, isActive, newActualLrp, requestStop } from '../model/actual-lrp-machine.js';
import type { ActualLrp, ActualLrpKey } from '../model/lrp.js';
import type { StoreTx } from '../store/store.js';
import type { Emit } from './context.js';

export async function loadActualLrp(tx: StoreTx, processGuid: string, index: number, expectedTag?: number): Promise<ActualLrp> {
  const a = await tx.getActualLrp(processGuid, index);
  if (!a) fail('not_found', `actual LRP ${processGuid}/${index} not found`);
  checkTag(a, expectedTag);
  return a;
}

export async function saveActualLrp(tx: StoreTx, emit: Emit, before: ActualLrp, after: ActualLrp): Promise<ActualLrp> {
  if (after === before) return after;
  if (!(await tx.updateActualLrp(after, before))) {
    fail('conflict', `actual LRP ${before.actualLrpKey.processGuid}/${before.actualLrpKey.index} was modified concurrently`);
  }
  await emit('actual_lrp_changed', { before, after });
  return after;
}

/** Creates the instance at `key`, unless one holds that index already (it is left as it is); whether it did. */
export async function createActualLrp(tx: StoreTx, emit: Emit, key: ActualLrpKey, now: number): Promise<boolean> {
  const a = newActualLrp(key, now);
  if (!(await tx.insertActualLrp(a))) return false;
  await emit('actual_lrp_created', { actualLrp: a });
  return true;
}

export async function deleteActualLrp(tx: StoreTx, emit: Emit, a: ActualLrp): Promise<void> {
  await tx.deleteActualLrp(a.actualLrpKey.processGuid, a.actualLrpKey.index);
  await emit('actual_lrp_removed', { actualLrp: a });
}

/** Stop one instance: unstarted ones go at once, running ones are asked to stop by their cell. */
export async function stopActualLrp(tx: StoreTx, emit: Emit, a: ActualLrp, now: number): Promise<void> {
  if (isActive(a)) await saveActualLrp(tx, emit, a, requestStop(a, now));
  else await deleteActualLrp(tx, emit, a);
}
