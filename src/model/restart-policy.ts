// The BBS restart calculator: the first crashes restart at once, later ones wait an
// exponentially growing back-off, and an instance that stays up long enough is forgiven.

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
