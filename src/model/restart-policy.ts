// The BBS restart calculator: the first crashes restart at once, later ones wait an
// exponentially growing back-off, and an instance that stays up long enough is forgiven.
// A DesiredLRP's restart option (restartPolicyFor) replaces it for that LRP.

import type { RestartOption } from './lrp.js';

export const IMMEDIATE_RESTARTS = 3;
export const CRASH_BACKOFF_MIN_MS = 30_000;
export const MAX_BACKOFF_MS = 16 * 60_000;
export const MAX_BACKOFF_EXPONENT = 5;
export const MAX_RESTARTS = 200;
export const CRASH_RESET_MS = 5 * 60_000;

export interface RestartPolicy {
  immediateRestarts: number;
  backoffMinMs: number;
  maxBackoffMs: number;
  maxRestarts: number;
  crashResetMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  immediateRestarts: IMMEDIATE_RESTARTS,
  backoffMinMs: CRASH_BACKOFF_MIN_MS,
  maxBackoffMs: MAX_BACKOFF_MS,
  maxRestarts: MAX_RESTARTS,
  crashResetMs: CRASH_RESET_MS,
};

/** Wait before restarting an instance that has crashed `crashCount` times (>= 1). */
export function restartDelayMs(crashCount: number, p: RestartPolicy = DEFAULT_RESTART_POLICY): number {
  if (crashCount <= p.immediateRestarts) return 0;
  const exponent = Math.min(crashCount - p.immediateRestarts - 1, MAX_BACKOFF_EXPONENT);
  return Math.min(p.backoffMinMs * 2 ** exponent, p.maxBackoffMs);
}

export function shouldRestartImmediately(crashCount: number, p: RestartPolicy = DEFAULT_RESTART_POLICY): boolean {
  return crashCount <= p.immediateRestarts;
}

/** A CRASHED instance may be restarted once its back-off has passed, unless it gave up. */
export function restartDue(crashCount: number, crashedAt: number, now: number, p: RestartPolicy = DEFAULT_RESTART_POLICY): boolean {
  if (crashCount >= p.maxRestarts) return false;
  return now - crashedAt >= restartDelayMs(crashCount, p);
}

/** Never restarted: a crash leaves the instance CRASHED for good. */
export const NO_RESTART_POLICY: RestartPolicy = { ...DEFAULT_RESTART_POLICY, immediateRestarts: 0, maxRestarts: 0 };

/** The executor's reason for a clean exit; the crash report carries no exit code of its own. */
export const CLEAN_EXIT_REASON = 'exited with code 0';

/** The policy for a crash (`crashReason`) of an LRP with this restart option; `base` without one. */
export function restartPolicyFor(option: RestartOption | undefined, crashReason: string, base: RestartPolicy = DEFAULT_RESTART_POLICY): RestartPolicy {
  if (!option) return base;
  if (option.mode === 'never' || (option.mode === 'on-failure' && crashReason === CLEAN_EXIT_REASON)) return NO_RESTART_POLICY;
  return option.immediate ? { ...base, immediateRestarts: Infinity, maxRestarts: Infinity } : base;
}
