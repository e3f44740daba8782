// What every use case needs: the store, the clock, and the bus that wakes event readers.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { EventType } from '../model/event.js';
import type { ActualLrp, DesiredLrp } from '../model/lrp.js';
import type { NewEvent, Store, StoreTx } from '../store/store.js';
import type { LeaseFence } from '../store/lease.js';
import type { CoreLimits } from './limits.js';

/** What a commit changed, from its events: the LRPs it touched, or something wider. */
export interface Touched {
  /** each LRP it touched, with how many of its events named that LRP */
  processGuids: Map<string, number>;
  /**
   * The LRPs it created, as its creation events wrote them: the desired LRP and the instances
   * created with it. Only complete when these were all of the LRP's events (see ConvergenceLoop).
   */
  created: Map<string, CreatedLrp>;
  /** cells or services changed: any LRP may be affected */
  other: boolean;
  /** a desired LRP of a service was created, changed or removed */
  serviceLrp: boolean;
}

export interface CreatedLrp {
  desired: DesiredLrp;
  actual: ActualLrp[];
}

/**
 * Tells listeners that new events were committed; they read them from the store in order.
 * The announcement waits for the next turn of the event loop (setImmediate), merging the
 * commits made meanwhile: the answer to the caller whose commit it is gets written first,
 * and a burst of commits wakes each listener once.
 */
export class EventBus extends EventEmitter {
  private pending?: { lastId: number; touched?: Touched };
  /** the last event id committed in this process, announced yet or not */
  lastCommitted = 0;

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  committed(lastId: number, touched?: Touched): void {
    this.lastCommitted = Math.max(this.lastCommitted, lastId);
    const p = this.pending;
    if (!p) {
      this.pending = { lastId, touched: touched && { ...touched, processGuids: new Map(touched.processGuids), created: new Map(touched.created) } };
      setImmediate(() => this.announce());
      return;
    }
    p.lastId = Math.max(p.lastId, lastId);
    if (!touched || !p.touched) p.touched = undefined;
    else {
      for (const [g, n] of touched.processGuids) p.touched.processGuids.set(g, (p.touched.processGuids.get(g) ?? 0) + n);
      for (const [g, c] of touched.created) if (!p.touched.created.has(g)) p.touched.created.set(g, c);
      p.touched.other ||= touched.other;
      p.touched.serviceLrp ||= touched.serviceLrp;
    }
  }

  private announce(): void {
    const p = this.pending;
    this.pending = undefined;
    if (p) this.emit('committed', p.lastId, p.touched);
  }
}

type Keyed = { actualLrpKey?: { processGuid?: string }; processGuid?: string; serviceId?: string } | undefined;

/** The desired LRP a desired_lrp_* event is about. */
function desiredOf(type: EventType, payload: Record<string, unknown>): Keyed {
  switch (type) {
    case 'desired_lrp_created':
    case 'desired_lrp_removed':
      return payload.desiredLrp as Keyed;
    case 'desired_lrp_changed':
      return payload.after as Keyed;
    default:
      return undefined;
  }
}

/** The LRP an event is about; undefined for cell and service events. */
function processGuidOf(type: EventType, payload: Record<string, unknown>): string | undefined {
  switch (type) {
    case 'desired_lrp_created':
    case 'desired_lrp_removed':
    case 'desired_lrp_changed':
      return desiredOf(type, payload)?.processGuid;
    case 'actual_lrp_created':
    case 'actual_lrp_removed':
      return (payload.actualLrp as Keyed)?.actualLrpKey?.processGuid;
    case 'actual_lrp_changed':
      return (payload.after as Keyed)?.actualLrpKey?.processGuid;
    case 'actual_lrp_crashed':
      return (payload.actualLrpKey as Keyed)?.processGuid;
    default:
      return undefined;
  }
}

export interface CoreContext {
  store: Store;
  bus: EventBus;
  log: Logger;
  now(): number;
  /** unset: no rate limit and the model's own instance cap */
  limits?: CoreLimits;
}

export type Emit = (type: EventType, payload: Record<string, unknown>) => Promise<void>;

/**
 * One use case = one transaction; its events are persisted in it (together, once the use case
 * is done: one insert for them all) and announced after commit.
 */
export async function inTransaction<T>(ctx: CoreContext, fn: (tx: StoreTx, emit: Emit) => Promise<T>, opts?: { fence?: LeaseFence }): Promise<T> {
  let lastId = 0;
  const at = ctx.now();
  let touched!: Touched;
  const result = await ctx.store.transaction(async (tx) => {
    // what this run of the work wrote (it may run again: see Store.transaction)
    lastId = 0;
    touched = { processGuids: new Map(), created: new Map(), other: false, serviceLrp: false };
    const events: NewEvent[] = [];
    const value = await fn(tx, async (type, payload) => {
      events.push({ type, payload, at });
      const guid = processGuidOf(type, payload);
      if (guid === undefined) touched.other = true;
      else {
        touched.processGuids.set(guid, (touched.processGuids.get(guid) ?? 0) + 1);
        if (type === 'desired_lrp_created') touched.created.set(guid, { desired: payload.desiredLrp as DesiredLrp, actual: [] });
        else if (type === 'actual_lrp_created') touched.created.get(guid)?.actual.push(payload.actualLrp as ActualLrp);
      }
      if (desiredOf(type, payload)?.serviceId) touched.serviceLrp = true;
    });
    if (events.length) lastId = await tx.appendEvents(events);
    return value;
  }, opts);
  if (lastId) ctx.bus.committed(lastId, touched);
  return result;
}
