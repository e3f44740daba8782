// Arrowhead orchestration lock use cases: create, query, remove (each one transaction), and
// the check other interfaces make before changing a service instance.

import { DroverError, fail } from '../model/errors.js';
import { hasRole, type Principal } from '../model/principal.js';
import { validateCreateRequest, validateQueryRequest, validateRemoveRequest, type Lock, type LockList } from '../model/lock.js';
import type { StoreReads } from '../store/store.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext } from './context.js';

/** Operators manage every owner's locks; anyone else only the locks in its own name. */
function requireOwner(p: Principal, owner: string): void {
  if (!hasRole(p, 'operator') && p.name !== owner) fail('forbidden', `${p.name} may not manage locks of ${owner}`);
}

const alreadyLocked = (held: Lock[]) => `Already locked: ${held.map((l) => l.serviceInstanceId).join(', ')}`;

/**
 * All or nothing: when any requested instance holds a live lock, nothing is created.
 *
 * The common case (no row for any requested instance) is a transaction of inserts only: the
 * unique index on the instance id refuses any row already there, so no read is needed first.
 * Only when it refuses (a live lock, or an expired one not purged yet) does a second attempt
 * purge the expired locks and look at what is held; the first attempt wrote nothing.
 * Creating locks writes no events, so the first attempt is the store's own transaction.
 */
export async function createLocks(ctx: CoreContext, p: Principal | undefined, payload: unknown): Promise<LockList> {
  const caller = authorize(p, 'owner');
  const now = ctx.now();
  const locks = validateCreateRequest(payload, now);
  for (const l of locks) requireOwner(caller, l.owner);
  const serviceInstanceIds = locks.map((l) => l.serviceInstanceId);
  const created = (entries: Lock[]): LockList => ({ entries, count: entries.length });
  try {
    return created(await ctx.store.insertLocks(locks));
  } catch (e) {
    if (!isConflict(e)) throw e;
  }
  try {
    return await inTransaction(ctx, async (tx) => {
      // Expired locks stop counting at expiresAt; purging them lets the unique index stand
      // for "one live lock per instance".
      await tx.purgeExpiredLocks(now);
      const held = await tx.queryLocks({ serviceInstanceIds }, undefined, now);
      if (held.entries.length) fail('invalid_request', alreadyLocked(held.entries));
      return created(await tx.insertLocks(locks));
    });
  } catch (e) {
    // Lost a race with another creator (another request or replica): report who won.
    if (!isConflict(e)) throw e;
    const held = await ctx.store.queryLocks({ serviceInstanceIds }, undefined, now);
    fail('invalid_request', alreadyLocked(held.entries));
  }
}

const isConflict = (e: unknown) => e instanceof DroverError && e.kind === 'exists';

export async function queryLocks(ctx: CoreContext, p: Principal | undefined, payload: unknown): Promise<LockList> {
  authorize(p, 'reader');
  const { filter, page } = validateQueryRequest(payload);
  const now = ctx.now();
  return inTransaction(ctx, async (tx) => {
    await tx.purgeExpiredLocks(now);
    return tx.queryLocks(filter, page, now);
  });
}

/** Removes `owner`'s management locks on those instances; others' locks and job locks stay. */
export async function removeLocks(ctx: CoreContext, p: Principal | undefined, owner: unknown, serviceInstanceIds: unknown): Promise<void> {
  const caller = authorize(p, 'owner');
  const request = validateRemoveRequest(owner, serviceInstanceIds);
  requireOwner(caller, request.owner);
  const now = ctx.now();
  await inTransaction(ctx, async (tx) => {
    await tx.purgeExpiredLocks(now);
    await tx.deleteLocks(request.owner, request.serviceInstanceIds);
  });
}

/**
 * The live lock another owner holds on a service instance, if any. Other interfaces call it
 * inside their own use case's transaction before changing that instance, and refuse with
 * their "locked" error naming `lock.owner`.
 */
export async function lockHeldByOther(tx: StoreReads, serviceInstanceId: string, principalName: string, now: number): Promise<Lock | undefined> {
  const { entries } = await tx.queryLocks({ serviceInstanceIds: [serviceInstanceId] }, undefined, now);
  return entries.find((l) => l.owner !== principalName);
}
