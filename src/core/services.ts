// Service use cases: a Service is a group of DesiredLRPs created and removed together.
// Instantiate creates the Service and all its DesiredLRPs in one transaction; terminate
// stops them. How far a service has got (READY, TERMINATED) follows from its instances,
// so a watcher settles that level-triggered, after each commit, rather than each caller.

import { randomUUID } from 'node:crypto';
import { DroverError, fail } from '../model/errors.js';
import type { ActualLrp, DesiredLrp } from '../model/lrp.js';
import { hasRole, type Principal } from '../model/principal.js';
import { canMoveService, type Service, type ServiceState } from '../model/service.js';
import { validateDesiredLrp, validateUpdate } from '../model/validate.js';
import type { StoreReads, StoreTx } from '../store/store.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext, type Emit, type Touched } from './context.js';
import { maxInstancesOf } from './limits.js';
import { applyUpdate, insertDesiredLrp, reconcileInstances } from './desired-lrps.js';
import { requireUnlocked } from './guards.js';
import { stopActualLrp } from './actual-lrps.js';
import type { LeaseFence } from '../store/lease.js';
import { coalesced } from './coalesced.js';

export interface ServiceSpec {
  /** chosen by the caller when it must be stable (e.g. derived from a request id); random otherwise */
  id?: string;
  name: string;
  kind: string;
  lrps: Partial<DesiredLrp>[];
  attributes?: Record<string, unknown>;
}

export interface ServiceStatus {
  service: Service;
  lrps: { desired: DesiredLrp; actual: ActualLrp[] }[];
}

const TERMINATING_REASON = 'service terminating';

async function loadService(tx: StoreReads, id: string): Promise<Service> {
  const s = typeof id === 'string' && id ? await tx.getService(id) : undefined;
  if (!s) fail('not_found', `service ${id} not found`);
  return s;
}

async function readStatus(tx: StoreReads, service: Service): Promise<ServiceStatus> {
  const desired = await tx.listDesiredLrps({ serviceId: service.id });
  const lrps = await Promise.all(desired.map(async (d) => ({ desired: d, actual: await tx.listActualLrps({ processGuid: d.processGuid }) })));
  return { service, lrps };
}

async function moveService(tx: StoreTx, emit: Emit, before: Service, change: Partial<Service>, now: number): Promise<Service> {
  const after: Service = { ...before, ...change, updatedAt: now };
  if (!canMoveService(before.state, after.state)) fail('invalid_transition', `service ${before.id} cannot go from ${before.state} to ${after.state}`);
  await tx.upsertService(after);
  await emit('service_changed', { before, after });
  return after;
}

export async function instantiateService(ctx: CoreContext, p: Principal | undefined, spec: ServiceSpec): Promise<Service> {
  const owner = authorize(p, 'owner');
  if (!spec.name) fail('invalid_request', 'service name is required');
  if (!spec.lrps.length) fail('invalid_request', 'a service needs at least one desired LRP');
  const id = spec.id ?? randomUUID();
  const lrps = spec.lrps.map((l) => ({ ...validateDesiredLrp({ ...l, serviceId: id }, maxInstancesOf(ctx)), modificationTag: { epoch: randomUUID(), index: 0 } }));
  const now = ctx.now();
  const service: Service = { id, name: spec.name, kind: spec.kind, owner: owner.name, state: 'INSTANTIATING', shutdown: false, attributes: spec.attributes ?? {}, createdAt: now, updatedAt: now };
  return inTransaction(ctx, async (tx, emit) => {
    if (await tx.getService(id)) fail('exists', `service ${id} already exists`);
    await tx.upsertService(service);
    await emit('service_changed', { after: service });
    for (const d of lrps) await insertDesiredLrp(tx, emit, d, now);
    return service;
  });
}

/**
 * `s`, when `caller` may change it: its owner or an operator; not terminating; not shut down
 * (unless `evenShutDown`: deleteService).
 */
function requireChangeable(s: Service, caller: Principal, evenShutDown = false): Service {
  if (!hasRole(caller, 'operator') && s.owner !== caller.name) fail('forbidden', `service ${s.id} belongs to ${s.owner}`);
  if (s.shutdown && !evenShutDown) fail('shut_down', `service ${s.id} is shut down`);
  if (s.state === 'TERMINATING' || s.state === 'TERMINATED') fail('invalid_transition', `service ${s.id} is already ${s.state}`);
  return s;
}

async function setEnabled(tx: StoreTx, emit: Emit, d: DesiredLrp, enabled: boolean, disabledReason: string, now: number): Promise<void> {
  const after: DesiredLrp = { ...d, enabled, disabledReason, modificationTag: { ...d.modificationTag, index: d.modificationTag.index + 1 } };
  await tx.updateDesiredLrp(after);
  await emit('desired_lrp_changed', { before: d, after });
  await reconcileInstances(tx, emit, after, now);
}

/** What an interface may check in terminateService's own transaction. */
export interface TerminateGuard {
  /** only a service of this kind: any other is not_found, as if it did not exist */
  kind?: string;
  /** true for a service this very request terminated before (a redelivery): it is returned unchanged */
  terminatedBy?: (s: Service) => boolean;
}

/**
 * Stops every process of the service (its DesiredLRPs are disabled, not deleted, so the
 * watcher can tell when the last instance is gone) and moves it to TERMINATING.
 * `attributes` are merged in the same transaction (the caller's note of the request).
 */
export async function terminateService(ctx: CoreContext, p: Principal | undefined, id: string, attributes: Record<string, unknown> = {}, guard: TerminateGuard = {}): Promise<Service> {
  return endService(ctx, authorize(p, 'owner'), id, attributes, false, guard);
}

/** Operator: terminates a service even when it is shut down (the other way out of a shutdown). */
export async function deleteService(ctx: CoreContext, p: Principal | undefined, id: string): Promise<Service> {
  return endService(ctx, authorize(p, 'operator'), id, {}, true, {});
}

function endService(ctx: CoreContext, caller: Principal, id: string, attributes: Record<string, unknown>, evenShutDown: boolean, guard: TerminateGuard): Promise<Service> {
  const { kind, terminatedBy } = guard;
  return inTransaction(ctx, async (tx, emit) => {
    const service = await loadService(tx, id);
    if (kind !== undefined && service.kind !== kind) fail('not_found', `service ${id} is not a ${kind} service`);
    if (terminatedBy?.(service)) return service;
    const before = requireChangeable(service, caller, evenShutDown);
    const now = ctx.now();
    const lrps = await tx.listDesiredLrps({ serviceId: id });
    for (const d of lrps) await requireUnlocked(ctx, tx, d, caller);
    for (const d of lrps) await setEnabled(tx, emit, d, false, TERMINATING_REASON, now);
    return moveService(tx, emit, before, { state: 'TERMINATING', attributes: { ...before.attributes, ...attributes } }, now);
  });
}

/** What changeService does to a service's LRPs and attributes (all in one transaction). */
export interface ServiceChange {
  /** merged into the service's attributes */
  attributes?: Record<string, unknown>;
  /** processGuid → instance count */
  scale?: Record<string, number>;
  /** LRPs whose instances are stopped and replaced by fresh ones */
  restart?: string[];
  /** LRPs taken out of the service (their instances stop) */
  remove?: string[];
}

/**
 * Changes part of a service: `plan` sees its status after the checks (owner, shut down,
 * terminating, locks on what it touches are checked after it) and says what to change.
 * Returns the status after the change.
 */
export async function changeService(ctx: CoreContext, p: Principal | undefined, id: string, plan: (s: ServiceStatus) => ServiceChange): Promise<ServiceStatus> {
  const caller = authorize(p, 'owner');
  return inTransaction(ctx, async (tx, emit) => {
    const before = requireChangeable(await loadService(tx, id), caller);
    const status = await readStatus(tx, before);
    const { attributes, scale = {}, restart = [], remove = [] } = plan(status);
    const lrps = new Map(status.lrps.map((l) => [l.desired.processGuid, l]));
    const touched = [...Object.keys(scale), ...restart, ...remove];
    for (const guid of touched) if (!lrps.has(guid)) fail('not_found', `${guid} is not part of service ${id}`);
    for (const guid of touched) await requireUnlocked(ctx, tx, lrps.get(guid)!.desired, caller);
    const now = ctx.now();
    for (const [guid, instances] of Object.entries(scale)) {
      const d = lrps.get(guid)!.desired;
      if (d.instances === instances) continue;
      const after = applyUpdate(d, validateUpdate({ instances }, maxInstancesOf(ctx)));
      await tx.updateDesiredLrp(after);
      await emit('desired_lrp_changed', { before: d, after });
      await reconcileInstances(tx, emit, after, now);
    }
    for (const guid of restart) {
      for (const a of await tx.listActualLrps({ processGuid: guid })) if (!a.stopRequested) await stopActualLrp(tx, emit, a, now);
    }
    for (const guid of remove) {
      await tx.deleteDesiredLrp(guid);
      await emit('desired_lrp_removed', { desiredLrp: lrps.get(guid)!.desired });
      for (const a of await tx.listActualLrps({ processGuid: guid })) await stopActualLrp(tx, emit, a, now);
    }
    const after = attributes ? await moveService(tx, emit, before, { attributes: { ...before.attributes, ...attributes } }, now) : before;
    return readStatus(tx, after);
  });
}

const SHUTDOWN_REASON = 'service shut down by an operator';

/** A shut-down service's LRPs and instances as they were when it was stopped (for forensics). */
export interface ShutdownSnapshot {
  at: number;
  by: string;
  lrps: {
    processGuid: string;
    instances: number;
    enabled: boolean;
    disabledReason: string;
    actual: { index: number; instanceGuid: string; cellId: string; state: ActualLrp['state']; since: number; crashCount: number; crashReason: string }[];
  }[];
}

/** Where shutdownService keeps the snapshot in the service's attributes. */
export const SHUTDOWN_SNAPSHOT = 'shutdownSnapshot';

/**
 * Operator emergency stop: every process of the service stops (its LRPs are disabled; their
 * definitions, working directories and logs stay), the state before is kept as a snapshot,
 * and every further change is refused ('shut_down') until restoreService or deleteService.
 * `already` when it was shut down before (nothing changes then).
 */
export async function shutdownService(ctx: CoreContext, p: Principal | undefined, id: string): Promise<{ status: ServiceStatus; already: boolean }> {
  const caller = authorize(p, 'operator');
  return inTransaction(ctx, async (tx, emit) => {
    const before = await loadService(tx, id);
    if (before.shutdown) return { status: await readStatus(tx, before), already: true };
    if (before.state === 'TERMINATING' || before.state === 'TERMINATED') fail('invalid_transition', `service ${id} is already ${before.state}`);
    const { lrps } = await readStatus(tx, before);
    for (const { desired } of lrps) await requireUnlocked(ctx, tx, desired, caller);
    const now = ctx.now();
    const snapshot: ShutdownSnapshot = {
      at: now,
      by: caller.name,
      lrps: lrps.map(({ desired: d, actual }) => ({
        processGuid: d.processGuid,
        instances: d.instances,
        enabled: d.enabled,
        disabledReason: d.disabledReason,
        actual: actual.map((a) => ({ index: a.actualLrpKey.index, instanceGuid: a.actualLrpInstanceKey.instanceGuid, cellId: a.actualLrpInstanceKey.cellId, state: a.state, since: a.since, crashCount: a.crashCount, crashReason: a.crashReason })),
      })),
    };
    for (const { desired } of lrps) if (desired.enabled) await setEnabled(tx, emit, desired, false, SHUTDOWN_REASON, now);
    const after = await moveService(tx, emit, before, { shutdown: true, attributes: { ...before.attributes, [SHUTDOWN_SNAPSHOT]: snapshot } }, now);
    return { status: await readStatus(tx, after), already: false };
  });
}

/** Operator: lifts a shutdown; the LRPs the shutdown disabled run again. The snapshot stays. */
export async function restoreService(ctx: CoreContext, p: Principal | undefined, id: string): Promise<Service> {
  authorize(p, 'operator');
  return inTransaction(ctx, async (tx, emit) => {
    const before = await loadService(tx, id);
    if (!before.shutdown) fail('invalid_transition', `service ${id} is not shut down`);
    const now = ctx.now();
    for (const d of await tx.listDesiredLrps({ serviceId: id })) if (d.disabledReason === SHUTDOWN_REASON) await setEnabled(tx, emit, d, true, '', now);
    return moveService(tx, emit, before, { shutdown: false }, now);
  });
}

/** True while any instance of the service still exists (e.g. a shutdown is still stopping them). */
export function hasInstances(status: ServiceStatus): boolean {
  return status.lrps.some((l) => l.actual.length > 0);
}

/** Marks a service that did not become READY in time as ERROR (no-op once it has moved on). */
export async function failService(ctx: CoreContext, id: string): Promise<void> {
  await inTransaction(ctx, async (tx, emit) => {
    const s = await loadService(tx, id);
    if (s.state === 'INSTANTIATING') await moveService(tx, emit, s, { state: 'ERROR' }, ctx.now());
  });
}

export async function serviceStatus(ctx: CoreContext, p: Principal | undefined, id: string): Promise<ServiceStatus> {
  authorize(p, 'reader');
  return readStatus(ctx.store, await loadService(ctx.store, id));
}

/** Services of one kind (ended ones too), of one name when given, oldest first. */
export async function findServices(ctx: CoreContext, p: Principal | undefined, kind: string, name?: string): Promise<Service[]> {
  authorize(p, 'reader');
  const all = await ctx.store.listServices();
  return all.filter((s) => s.kind === kind && (name === undefined || s.name === name)).sort((a, b) => a.createdAt - b.createdAt);
}

/** Why a service cannot become READY: its disabled functions (e.g. by the crash-loop guard). */
export function serviceProblems(status: ServiceStatus): string[] {
  return status.lrps.filter((l) => !l.desired.enabled).map((l) => `${l.desired.processGuid} is disabled: ${l.desired.disabledReason || 'no reason given'}`);
}

/** The state a service's instances say it has reached, if it moved. */
function settledState({ service, lrps }: ServiceStatus): ServiceState | undefined {
  if (service.state === 'TERMINATING') return lrps.every((l) => l.actual.length === 0) ? 'TERMINATED' : undefined;
  // a shut-down service's LRPs are disabled on purpose: that is no failure to report
  if (service.state !== 'INSTANTIATING' || service.shutdown) return undefined;
  if (lrps.some((l) => !l.desired.enabled)) return 'ERROR';
  const running = (l: (typeof lrps)[number]) => l.actual.filter((a) => a.state === 'RUNNING' && !a.stopRequested).length;
  return lrps.every((l) => running(l) >= l.desired.instances) ? 'READY' : undefined;
}

/**
 * One pass: INSTANTIATING → READY | ERROR, TERMINATING → TERMINATED (its DesiredLRPs then go).
 * With `fence` (the leader's lease and epoch), each service's transaction commits only while
 * that lease still holds: a deposed leader's pass fails with `conflict` and writes nothing.
 * Returns the process guids of the LRPs of the services still settling.
 */
export async function settleServices(ctx: CoreContext, fence?: LeaseFence): Promise<Set<string>> {
  const settling = new Set<string>();
  for (const candidate of await ctx.store.listServices({ states: ['INSTANTIATING', 'TERMINATING'] })) {
    const stillSettling = await inTransaction(ctx, async (tx, emit) => {
      const service = await tx.getService(candidate.id);
      if (!service) return [];
      const status = await readStatus(tx, service);
      const state = settledState(status);
      if (!state) return status.lrps.map((l) => l.desired.processGuid);
      if (state === 'TERMINATED') {
        for (const { desired } of status.lrps) {
          await tx.deleteDesiredLrp(desired.processGuid);
          await emit('desired_lrp_removed', { desiredLrp: desired });
        }
      }
      await moveService(tx, emit, service, { state }, ctx.now());
      return [];
    }, { fence });
    for (const guid of stillSettling) settling.add(guid);
  }
  return settling;
}

/**
 * Settles services after every commit that may move one, and on an interval (commits of other
 * replicas); returns the stop function. `fence` gives the leader's current lease for each pass
 * (none: unfenced).
 * A commit may move a service when it changed a service or cell, or a desired LRP of a service,
 * or touched an LRP of a service the last pass left settling; a commit during a pass always
 * counts (that pass may have read before it). Other commits (plain BBS desires) need no pass.
 */
export function watchServices(ctx: CoreContext, intervalMs: number, fence: () => LeaseFence | undefined = () => undefined): () => Promise<void> {
  let stopped = false;
  /** guids of the LRPs of services still settling; undefined: not known (every commit counts) */
  let settling: Set<string> | undefined;
  const settle = () =>
    settleServices(ctx, fence()).then(
      (guids) => {
        settling = guids;
      },
      (e) => {
        settling = undefined;
        if (e instanceof DroverError && e.kind === 'conflict') ctx.log.warn({ err: e.message }, 'service watcher pass refused: no longer the leader');
        else ctx.log.error({ err: e }, 'service watcher pass failed');
      },
    );
  const pass = coalesced(() => (stopped ? Promise.resolve() : settle()));
  const mayMoveService = (t: Touched | undefined): boolean =>
    !t || t.other || t.serviceLrp || !settling || pass.running() || [...t.processGuids.keys()].some((g) => settling!.has(g));
  const onCommit = (_lastId: number, touched?: Touched) => {
    if (mayMoveService(touched)) pass.trigger();
  };
  ctx.bus.on('committed', onCommit);
  const timer = setInterval(pass.trigger, intervalMs);
  pass.trigger();
  return async () => {
    stopped = true;
    ctx.bus.off('committed', onCommit);
    clearInterval(timer);
    await pass.idle();
  };
}

/**
 * Resolves with the service once `done(service)` holds, checking after each commit and
 * every second; undefined when `timeoutMs` passes or `signal` aborts first.
 */
export function waitForService(ctx: CoreContext, id: string, done: (s: Service) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<Service | undefined> {
  return new Promise((resolve, reject) => {
    let finished = false;
    const finish = (s: Service | undefined, err?: unknown) => {
      if (finished) return;
      finished = true;
      ctx.bus.off('committed', check.trigger);
      clearInterval(poll);
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(s);
    };
    const check = coalesced(async () => {
      if (finished) return;
      try {
        const s = await ctx.store.getService(id);
        if (s && done(s)) finish(s);
      } catch (e) {
        finish(undefined, e);
      }
    });
    const onAbort = () => finish(undefined);
    ctx.bus.on('committed', check.trigger);
    const poll = setInterval(check.trigger, 1000);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    signal?.addEventListener('abort', onAbort);
    if (signal?.aborted) onAbort();
    else check.trigger();
  });
}
