// Use cases a cell drives (claim, start, crash, fail, remove) and retire, which anyone with
// the owner role may ask for. Each is one transition of the ActualLRP state machine.

import { checkRemovable, claim, crash, EMPTY_INSTANCE_KEY, EMPTY_NET_INFO, failPlacement, start } from '../model/actual-lrp-machine.js';
import type { Principal, Role } from '../model/principal.js';
import type { ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpNetInfo, DesiredLrp } from '../model/lrp.js';
import { validateProcessGuid } from '../model/validate.js';
import { DroverError, fail } from '../model/errors.js';
import { restartPolicyFor } from '../model/restart-policy.js';
import type { StoreTx } from '../store/store.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext, type Emit } from './context.js';
import { deleteActualLrp, loadActualLrp, saveActualLrp, stopActualLrp } from './actual-lrps.js';
import { requireChangeAllowed } from './guards.js';
import { guardCrashLoop } from './crash-loop.js';

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

type Change<T> = (a: ActualLrp, tx: StoreTx, emit: Emit, now: number) => Promise<T>;

/** The shape of every use case here: check the role and key, load the instance (checking the caller's tag), change it. */
function onActualLrp<T>(ctx: CoreContext, p: Principal | undefined, role: Role, key: Partial<ActualLrpKey> | undefined, expectedTag: number | undefined, change: Change<T>): Promise<T> {
  authorize(p, role);
  const k = requireKey(key);
  return inTransaction(ctx, async (tx, emit) => change(await loadActualLrp(tx, k.processGuid, k.index, expectedTag), tx, emit, ctx.now()));
}

export async function claimActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey>, instanceKey: Partial<ActualLrpInstanceKey> | undefined, expectedTag?: number) {
  return onActualLrp(ctx, p, 'agent', key, expectedTag, (a, tx, emit, now) => saveActualLrp(tx, emit, a, claim(a, requireInstanceKey(instanceKey), now)));
}

/** One item of a batch: an instance, the caller's instance key for it and the tag it last read. */
export interface BatchItem {
  key: Partial<ActualLrpKey> | undefined;
  instanceKey: Partial<ActualLrpInstanceKey> | undefined;
  expectedTag?: number;
}

/**
 * Many transitions in one transaction, each applied as its single-instance use case would
 * (its own checks, tag and events). A refused item is answered with its error and leaves
 * nothing behind: every refusal happens before that item writes.
 */
async function inBatch<I extends BatchItem>(
  ctx: CoreContext,
  p: Principal | undefined,
  items: I[],
  change: (a: ActualLrp, item: I, tx: StoreTx, emit: Emit, now: number) => Promise<unknown>,
): Promise<(DroverError | undefined)[]> {
  authorize(p, 'agent');
  return inTransaction(ctx, async (tx, emit) => {
    const now = ctx.now();
    const errors: (DroverError | undefined)[] = [];
    for (const item of items) {
      try {
        const k = requireKey(item.key);
        await change(await loadActualLrp(tx, k.processGuid, k.index, item.expectedTag), item, tx, emit, now);
        errors.push(undefined);
      } catch (e) {
        if (!(e instanceof DroverError)) throw e;
        errors.push(e);
      }
    }
    return errors;
  });
}

/** A cell claims many instances at once and gets the desired LRPs it needs to run them. */
export async function claimActualLrps(ctx: CoreContext, p: Principal | undefined, items: BatchItem[]): Promise<{ errors: (DroverError | undefined)[]; desiredLrps: DesiredLrp[] }> {
  const desired = new Map<string, DesiredLrp | undefined>();
  const errors = await inBatch(ctx, p, items, async (a, item, tx, emit, now) => {
    await saveActualLrp(tx, emit, a, claim(a, requireInstanceKey(item.instanceKey), now));
    const guid = a.actualLrpKey.processGuid;
    if (!desired.has(guid)) desired.set(guid, await tx.getDesiredLrp(guid));
  });
  return { errors, desiredLrps: [...desired.values()].filter((d) => d !== undefined) };
}

/** A cell reports many started instances at once. */
export async function startActualLrps(ctx: CoreContext, p: Principal | undefined, items: (BatchItem & { netInfo?: ActualLrpNetInfo })[]): Promise<(DroverError | undefined)[]> {
  return inBatch(ctx, p, items, (a, item, tx, emit, now) => saveActualLrp(tx, emit, a, start(a, requireInstanceKey(item.instanceKey), item.netInfo ?? EMPTY_NET_INFO, now)));
}

export async function startActualLrp(
  ctx: CoreContext,
  p: Principal | undefined,
  key: Partial<ActualLrpKey> | undefined,
  instanceKey: Partial<ActualLrpInstanceKey> | undefined,
  netInfo: ActualLrpNetInfo | undefined,
  expectedTag?: number,
) {
  return onActualLrp(ctx, p, 'agent', key, expectedTag, (a, tx, emit, now) =>
    saveActualLrp(tx, emit, a, start(a, requireInstanceKey(instanceKey), netInfo ?? EMPTY_NET_INFO, now)),
  );
}

export async function crashActualLrp(
  ctx: CoreContext,
  p: Principal | undefined,
  key: Partial<ActualLrpKey> | undefined,
  instanceKey: Partial<ActualLrpInstanceKey> | undefined,
  reason: string,
  expectedTag?: number,
  restartInstanceKey?: Partial<ActualLrpInstanceKey>,
): Promise<{ restartDesiredLrp?: DesiredLrp }> {
  return onActualLrp(ctx, p, 'agent', key, expectedTag, async (a, tx, emit, now) => {
    const ik = requireInstanceKey(instanceKey);
    const d = await tx.getDesiredLrp(a.actualLrpKey.processGuid);
    const after = crash(a, ik, reason, now, restartPolicyFor(d?.restart, reason));
    await emit('actual_lrp_crashed', { actualLrpKey: after.actualLrpKey, actualLrpInstanceKey: ik, crashCount: after.crashCount, crashReason: reason, since: after.since });
    // it was being stopped (surplus or removed): it has stopped, so it goes, as a stopped one would
    if (after.stopRequested) {
      await deleteActualLrp(tx, emit, a);
      return {};
    }
    const saved = await saveActualLrp(tx, emit, a, after);
    if (!d || saved.state !== 'UNCLAIMED') return {};
    // a restart at once counts against the LRP's start limit, if it has one
    await guardCrashLoop(tx, emit, d, a.actualLrpKey.index, reason, now);
    if (!restartInstanceKey || restartInstanceKey.cellId !== ik.cellId) return {};
    // The crashing cell asked to run the restart itself: the claim it would send next, in
    // this transaction. Re-read the instance: the crash-loop guard may have disabled the LRP
    // and stopped or removed it; then there is nothing to claim. What the cell runs is `d`:
    // the guard changes no more than its restart bookkeeping when the instance stays.
    const again = d.restart?.limit ? await tx.getActualLrp(a.actualLrpKey.processGuid, a.actualLrpKey.index) : saved;
    if (again?.state !== 'UNCLAIMED' || again.targetCellId !== ik.cellId || again.stopRequested) return {};
    await saveActualLrp(tx, emit, again, claim(again, requireInstanceKey(restartInstanceKey), now));
    return { restartDesiredLrp: d };
  });
}

export async function failActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey> | undefined, reason: string, expectedTag?: number) {
  return onActualLrp(ctx, p, 'agent', key, expectedTag, (a, tx, emit, now) => saveActualLrp(tx, emit, a, failPlacement(a, reason, now)));
}

/** The cell stopped the instance (or never started it): the record goes away. */
export async function removeActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey>, instanceKey: Partial<ActualLrpInstanceKey> | undefined, expectedTag?: number) {
  const ik = { ...EMPTY_INSTANCE_KEY, ...instanceKey };
  return onActualLrp(ctx, p, 'agent', key, expectedTag, async (a, tx, emit) => {
    checkRemovable(a, ik);
    await deleteActualLrp(tx, emit, a);
  });
}

/** Stops one instance without touching the desired state; convergence then replaces it. */
export async function retireActualLrp(ctx: CoreContext, p: Principal | undefined, key: Partial<ActualLrpKey> | undefined, expectedTag?: number, force = false) {
  return onActualLrp(ctx, p, 'owner', key, expectedTag, async (a, tx, emit, now) => {
    const d = await tx.getDesiredLrp(a.actualLrpKey.processGuid);
    if (d) await requireChangeAllowed(ctx, tx, d, p!, force);
    await stopActualLrp(tx, emit, a, now);
  });
}
