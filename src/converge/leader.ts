// Leader election among control-plane replicas: a lease row in the shared store (see
// src/store/lease.ts), renewed every renewMs; the replica holding it runs convergence (and
// the other once-only work). Leadership also ends locally once leaseMs has passed since the
// last successful renewal began, so a replica that was paused (SIGSTOP, a long GC, a
// partition) stops leading the moment it runs again, before any renewal round trip — and
// its late writes are refused by the store anyway (the fence's epoch is stale).
//
// On SQLite there is only one process: it always leads, at epoch 1.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { LeaseFence } from '../store/lease.js';

export const DEFAULT_LEASE_MS = 3000;
export const CONVERGENCE_LEASE = 'convergence';

export interface LeaderOptions {
  /** the replica id, unique among replicas */
  holder: string;
  /** how long a lease lasts without renewal */
  leaseMs: number;
  /** how often the lease is renewed (or, when another replica holds it, tried) */
  renewMs: number;
  name?: string;
}

export interface LeaderElectionEvents {
  change: [leading: boolean];
}

export class LeaderElection extends EventEmitter<LeaderElectionEvents> {
  readonly name: string;
  /** the epoch of the lease this replica holds or last held (0: never) */
  private myEpoch = 0;
  /** performance.now() until which this replica may act as leader */
  private leadingUntil = 0;
  private wasLeading = false;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly opts: LeaderOptions,
    private readonly log: Logger,
  ) {
    super();
    this.name = opts.name ?? CONVERGENCE_LEASE;
    if (!(opts.leaseMs > 0) || !(opts.renewMs > 0) || opts.renewMs >= opts.leaseMs) throw new Error(`lease renewal (${opts.renewMs} ms) must be shorter than the lease (${opts.leaseMs} ms)`);
  }

  get holder(): string {
    return this.opts.holder;
  }

  get shared(): boolean {
    return this.store.kind === 'postgres';
  }

  /** The epoch this replica leads at (SQLite: 1), or last led at; 0 when it never led. */
  get epoch(): number {
    return this.shared ? this.myEpoch : 1;
  }

  isLeader(): boolean {
    if (!this.shared) return !this.stopped;
    return !this.stopped && this.myEpoch > 0 && performance.now() < this.leadingUntil;
  }

  /** What this replica's convergence writes must still hold; undefined on SQLite (nothing to fence). */
  fence(): LeaseFence | undefined {
    return this.shared ? { name: this.name, holder: this.opts.holder, epoch: this.myEpoch } : undefined;
  }

  /** The first attempt completes before this resolves, so a lone replica leads at once. */
  async start(): Promise<void> {
    if (!this.shared) {
      this.notice();
      return;
    }
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.opts.renewMs);
  }

  /** Stops trying; a leader gives the lease up so that a successor need not wait for it to expire. */
  async stop(): Promise<void> {
    const leading = this.isLeader();
    this.stopped = true;
    clearInterval(this.timer);
    this.notice();
    if (this.shared && leading) await this.store.releaseLease(this.name, this.opts.holder).catch((e) => this.log.warn({ err: (e as Error).message }, 'could not release the leader lease'));
  }

  private async tick(): Promise<void> {
    this.notice(); // the lease may have run out while we were not running
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    const started = performance.now();
    try {
      const lease = await this.store.acquireLease(this.name, this.opts.holder, this.opts.leaseMs);
      if (this.stopped) return;
      if (lease) {
        // The database set expires_at = its now + leaseMs after `started`: stopping at
        // started + leaseMs locally is never later than the lease (clock rates permitting).
        this.leadingUntil = started + this.opts.leaseMs;
        if (lease.epoch !== this.myEpoch) this.log.info({ replica: this.opts.holder, epoch: lease.epoch }, 'leading');
        this.myEpoch = lease.epoch;
      } else {
        this.leadingUntil = 0;
      }
    } catch (e) {
      // Unknown: keep the local deadline; it runs out unless a later renewal succeeds.
      this.log.warn({ err: (e as Error).message }, 'leader lease renewal failed');
    } finally {
      this.ticking = false;
      this.notice();
    }
  }

  private notice(): void {
    const leading = this.isLeader();
    if (leading === this.wasLeading) return;
    this.wasLeading = leading;
    if (!leading && this.shared) this.log.info({ replica: this.opts.holder, epoch: this.myEpoch }, 'no longer leading');
    this.emit('change', leading);
  }
}
