// What every use case needs: the store, the clock, and the bus that wakes event readers.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { EventType } from '../model/event.js';
import type { Store, StoreTx } from '../store/store.js';
import type { LeaseFence } from '../store/lease.js';
import type { CoreLimits } from './limits.js';

/** Tells listeners that new events were committed; they read them from the store in order. */
export class EventBus extends EventEmitter {
  constructor() {
    super();
    this.setMaxListeners(0);
  }
  committed(lastId: number): void {
    this.emit('committed', lastId);
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

/** One use case = one transaction; its events are persisted in it and announced after commit. */
export async function inTransaction<T>(ctx: CoreContext, fn: (tx: StoreTx, emit: Emit) => Promise<T>, opts?: { fence?: LeaseFence }): Promise<T> {
  let lastId = 0;
  const at = ctx.now();
  const result = await ctx.store.transaction(
    (tx) =>
      fn(tx, async (type, payload) => {
        lastId = await tx.appendEvent(type, payload, at);
      }),
    opts,
  );
  if (lastId) ctx.bus.committed(lastId);
  return result;
}
