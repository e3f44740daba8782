// The event log's retention. Every change appends events (src/core/context.ts), which SSE
// subscribers resume from and the metrics count; nothing else reads old ones back. Without a
// limit the log would grow for as long as Drover runs (a thousand desires write about 1.7 MB),
// so the leader deletes the events older than the retention, oldest first.

import type { LeaseFence } from '../store/lease.js';
import { coalesced } from './coalesced.js';
import type { CoreContext } from './context.js';

/** events deleted per transaction: SQLite's one writer is held for milliseconds, not seconds */
const PRUNE_BATCH = 5000;

/**
 * Deletes the events written more than `retentionMs` ago, a batch per transaction; how many.
 * With `fence`, each batch commits only while that lease holds (see Store.transaction).
 */
export async function pruneEventLog(ctx: CoreContext, retentionMs: number, fence?: LeaseFence): Promise<number> {
  const before = ctx.now() - retentionMs;
  // the usual case, answered by one indexed read and no write: nothing is that old
  const oldest = await ctx.store.oldestEventAt();
  if (oldest === undefined || oldest >= before) return 0;
  let deleted = 0;
  for (;;) {
    const n = await ctx.store.transaction((tx) => tx.deleteEventsBefore(before, PRUNE_BATCH), { fence });
    deleted += n;
    if (n < PRUNE_BATCH) return deleted;
  }
}

export interface EventRetention {
  /** how long events are kept (ms); 0 keeps them all */
  retentionMs: number;
  /** how often the log is looked at */
  intervalMs: number;
  /** only the leader prunes (SQLite: always this process) */
  isLeader(): boolean;
  fence(): LeaseFence | undefined;
}

/** Prunes the log now and every `intervalMs` while leading; returns the stop function. */
export function keepEventLog(ctx: CoreContext, opts: EventRetention): () => Promise<void> {
  if (opts.retentionMs === 0) return async () => {};
  let stopped = false;
  const pass = coalesced(async () => {
    if (stopped || !opts.isLeader()) return;
    try {
      const deleted = await pruneEventLog(ctx, opts.retentionMs, opts.fence());
      if (deleted) ctx.log.debug({ deleted }, 'event log pruned');
    } catch (e) {
      ctx.log.warn({ err: (e as Error).message }, 'event log not pruned; trying again later');
    }
  });
  const timer = setInterval(pass.trigger, opts.intervalMs);
  timer.unref();
  pass.trigger();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await pass.idle();
  };
}
