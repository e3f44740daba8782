// The crash-loop guard: a start limit (systemd's StartLimitBurst), with Era's answer at the
// limit. An LRP whose restart option has a limit and whose instance crashes again after
// `restarts` restarts within `windowMs` is disabled — enabled=false, the reason and the
// time recorded, its instances stopped — instead of being restarted once more.
// Counted per instance index: one node's loop is the signal, not one crash on every node.

import type { DesiredLrp } from '../model/lrp.js';
import type { StoreTx } from '../store/store.js';
import type { Emit } from './context.js';
import { reconcileInstances } from './desired-lrps.js';

/** Runs in the crash's transaction, for a crash that restarts its instance at once. */
export async function guardCrashLoop(tx: StoreTx, emit: Emit, d: DesiredLrp, index: number, reason: string, now: number): Promise<void> {
  const limit = d.restart?.limit;
  if (!limit || !d.enabled) return;
  const key = String(index);
  const recent = (d.restartLog?.[key] ?? []).filter((t) => now - t < limit.windowMs);
  if (recent.length < limit.restarts) {
    // bookkeeping, not a change of the desired state: no new tag, no event
    await tx.updateDesiredLrp({ ...d, restartLog: { ...d.restartLog, [key]: [...recent, now] } });
    return;
  }
  const after: DesiredLrp = {
    ...d,
    enabled: false,
    disabledReason: `crash loop: instance ${index} crashed again after ${recent.length} restarts within ${limit.windowMs / 1000} s (last: ${reason})`,
    disabledAt: now,
    // so that enabling it again starts with a clean slate, whoever enables it
    restartLog: {},
    modificationTag: { ...d.modificationTag, index: d.modificationTag.index + 1 },
  };
  await tx.updateDesiredLrp(after);
  await emit('desired_lrp_changed', { before: d, after });
  await reconcileInstances(tx, emit, after, now);
}
