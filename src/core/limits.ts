// Limits that keep one caller from taking Drover down: how often each principal may call
// (a token bucket per principal, shared by all five interfaces, so a caller cannot get
// around it by switching protocol) and how many instances one DesiredLRP may ask for.
// Body and message sizes are enforced where bytes arrive, in the transports.

import { fail } from '../model/errors.js';
import type { Principal } from '../model/principal.js';
import type { CoreContext } from './context.js';

export interface RateLimit {
  /** requests per second each principal may make on average; 0 turns the limit off */
  perSecond: number;
  /** how many requests a principal may make at once after being idle */
  burst: number;
}

export interface CoreLimits {
  /** the most instances one DesiredLRP (a process of a service) may have */
  maxInstances: number;
  rate?: RateLimiter;
}

/** Buckets beyond this many are pruned of the full ones (idle principals). */
const PRUNE_ABOVE = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token of the principal's bucket, or fails with `rate_limited`. Unidentified callers are refused elsewhere. */
  take(p: Principal | undefined): void {
    if (!p || this.limit.perSecond <= 0) return;
    const t = this.now();
    const b = this.buckets.get(p.name) ?? { tokens: this.limit.burst, at: t };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((t - b.at) * this.limit.perSecond) / 1000);
    b.at = t;
    this.buckets.set(p.name, b);
    if (b.tokens < 1) {
      const retryMs = Math.ceil(((1 - b.tokens) * 1000) / this.limit.perSecond);
      fail('rate_limited', `${p.name} made more than ${this.limit.perSecond} requests per second (burst ${this.limit.burst}); retry in ${retryMs} ms`);
    }
    b.tokens -= 1;
    if (this.buckets.size > PRUNE_ABOVE) this.prune(t);
  }

  private prune(t: number): void {
    for (const [name, b] of this.buckets) if (b.tokens + ((t - b.at) * this.limit.perSecond) / 1000 >= this.limit.burst) this.buckets.delete(name);
  }
}

/** Every interface calls this once per request, after it knows who calls. */
export function takeRequestToken(ctx: CoreContext, p: Principal | undefined): void {
  ctx.limits?.rate?.take(p);
}

/** The instance cap the core validates DesiredLRPs against. */
export const maxInstancesOf = (ctx: CoreContext): number | undefined => ctx.limits?.maxInstances;
