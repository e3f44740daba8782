// The one ActualLRP state machine. Every change to an ActualLRP is a transition here; each
// returns a new record with the modification tag bumped, or throws the BBS-shaped refusal.

import { randomUUID } from 'node:crypto';
import { DroverError, fail } from './errors.js';
import type { ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpNetInfo } from './lrp.js';
import { DEFAULT_RESTART_POLICY, shouldRestartImmediately, type RestartPolicy } from './restart-policy.js';

export const EMPTY_INSTANCE_KEY: ActualLrpInstanceKey = { instanceGuid: '', cellId: '' };
export const EMPTY_NET_INFO: ActualLrpNetInfo = { address: '', ports: [], instanceAddress: '', preferredAddress: 'UNKNOWN' };

export function newActualLrp(key: ActualLrpKey, now: number): ActualLrp {
  return {
    actualLrpKey: key,
    actualLrpInstanceKey: EMPTY_INSTANCE_KEY,
    actualLrpNetInfo: EMPTY_NET_INFO,
    crashCount: 0,
    crashReason: '',
    state: 'UNCLAIMED',
    placementError: '',
    since: now,
    modificationTag: { epoch: randomUUID(), index: 0 },
    presence: 'ORDINARY',
    stopRequested: false,
    targetCellId: '',
  };
}

function next(a: ActualLrp, change: Partial<ActualLrp>, now: number): ActualLrp {
  const stateChanged = change.state !== undefined && change.state !== a.state;
  return {
    ...a,
    ...change,
    since: stateChanged ? now : a.since,
    modificationTag: { epoch: a.modificationTag.epoch, index: a.modificationTag.index + 1 },
  };
}

function sameInstance(a: ActualLrp, k: ActualLrpInstanceKey): boolean {
  return a.actualLrpInstanceKey.instanceGuid === k.instanceGuid && a.actualLrpInstanceKey.cellId === k.cellId;
}

function describe(a: ActualLrp): string {
  return `${a.actualLrpKey.processGuid}/${a.actualLrpKey.index} (${a.state})`;
}

function requireInstanceKey(k: ActualLrpInstanceKey): void {
  if (!k.instanceGuid || !k.cellId) fail('invalid_request', 'actual_lrp_instance_key: instance_guid and cell_id are required');
}

export function claim(a: ActualLrp, k: ActualLrpInstanceKey, now: number): ActualLrp {
  requireInstanceKey(k);
  if (a.stopRequested) fail('cannot_claim', `${describe(a)} is being stopped`);
  if (a.state === 'UNCLAIMED') return next(a, { state: 'CLAIMED', actualLrpInstanceKey: k, placementError: '' }, now);
  if (a.state === 'CLAIMED' && sameInstance(a, k)) return a; // idempotent repeat
  const holder = a.actualLrpInstanceKey.cellId;
  fail('cannot_claim', `cannot claim ${describe(a)}${holder ? `: held by cell ${holder}` : ''}`);
}

export function start(a: ActualLrp, k: ActualLrpInstanceKey, netInfo: ActualLrpNetInfo, now: number): ActualLrp {
  requireInstanceKey(k);
  if (a.state === 'UNCLAIMED' || (a.state === 'CLAIMED' && sameInstance(a, k))) {
    return next(a, { state: 'RUNNING', actualLrpInstanceKey: k, actualLrpNetInfo: netInfo, placementError: '' }, now);
  }
  if (a.state === 'RUNNING' && sameInstance(a, k)) return next(a, { actualLrpNetInfo: netInfo }, now);
  if (a.state === 'CRASHED') fail('cannot_start', `cannot start ${describe(a)}`);
  fail('running_on_different_cell', `${describe(a)} belongs to cell ${a.actualLrpInstanceKey.cellId}`);
}

/** A crash restarts at once (back to UNCLAIMED) while the policy allows it, else waits as CRASHED. */
export function crash(a: ActualLrp, k: ActualLrpInstanceKey, reason: string, now: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): ActualLrp {
  requireInstanceKey(k);
  if (a.state !== 'CLAIMED' && a.state !== 'RUNNING') fail('cannot_crash', `cannot crash ${describe(a)}`);
  if (!sameInstance(a, k)) fail('cannot_crash', `${describe(a)} belongs to cell ${a.actualLrpInstanceKey.cellId}`);
  const crashCount = a.crashCount + 1;
  // no longer on any cell, so no longer suspect either (presence belongs to active instances)
  const common = { crashCount, crashReason: reason, actualLrpNetInfo: EMPTY_NET_INFO, presence: 'ORDINARY' as const };
  if (shouldRestartImmediately(crashCount, policy) && !a.stopRequested) {
    // Restart where it ran: the cell can claim it again at once, without a placement pass.
    return next(a, { ...common, state: 'UNCLAIMED', targetCellId: k.cellId, actualLrpInstanceKey: EMPTY_INSTANCE_KEY }, now);
  }
  return next(a, { ...common, state: 'CRASHED', targetCellId: '', actualLrpInstanceKey: EMPTY_INSTANCE_KEY }, now);
}

/** Placement could not be made: the instance stays UNCLAIMED with the reason. */
export function failPlacement(a: ActualLrp, reason: string, now: number): ActualLrp {
  if (a.state !== 'UNCLAIMED') fail('cannot_fail', `cannot fail ${describe(a)}: only UNCLAIMED instances fail placement`);
  return next(a, { placementError: reason }, now);
}

/** Back to UNCLAIMED and unplaced: a crashed instance whose back-off passed, a stuck claim, a lost cell. */
export function unclaim(a: ActualLrp, now: number): ActualLrp {
  if (a.state === 'UNCLAIMED' && a.presence === 'ORDINARY' && !a.targetCellId) return a;
  return next(a, { state: 'UNCLAIMED', presence: 'ORDINARY', targetCellId: '', actualLrpInstanceKey: EMPTY_INSTANCE_KEY, actualLrpNetInfo: EMPTY_NET_INFO }, now);
}

/** Placement: an UNCLAIMED instance is offered to one cell, which may then claim it. */
export function place(a: ActualLrp, cellId: string, now: number): ActualLrp {
  if (a.state !== 'UNCLAIMED') fail('invalid_transition', `cannot place ${describe(a)}`);
  return a.targetCellId === cellId ? a : next(a, { targetCellId: cellId, placementError: '' }, now);
}

/** Its cell stopped heartbeating: keep the record but mark it until it is placed again. */
export function markSuspect(a: ActualLrp, now: number): ActualLrp {
  if (a.state !== 'CLAIMED' && a.state !== 'RUNNING') fail('invalid_transition', `cannot suspect ${describe(a)}`);
  return next(a, { presence: 'SUSPECT' }, now);
}

/** Its cell is heartbeating again and still runs it. */
export function clearSuspect(a: ActualLrp, now: number): ActualLrp {
  return a.presence === 'SUSPECT' ? next(a, { presence: 'ORDINARY' }, now) : a;
}

export function requestStop(a: ActualLrp, now: number): ActualLrp {
  return a.stopRequested ? a : next(a, { stopRequested: true }, now);
}

/** The cell-side remove: only the owning cell may remove a claimed or running instance. */
/**
 * A cell removes only its own instance: a claimed or running one needs its instance key, and
 * a key given for any other state must match too (an UNCLAIMED instance has none), so a cell
 * that lost an instance to re-placement cannot remove what replaced it.
 */
export function checkRemovable(a: ActualLrp, k: ActualLrpInstanceKey): void {
  const keyGiven = k.instanceGuid !== '' || k.cellId !== '';
  if ((keyGiven || isActive(a)) && !sameInstance(a, k)) {
    const owner = a.actualLrpInstanceKey.cellId;
    fail('cannot_remove', owner ? `${describe(a)} belongs to cell ${owner}` : `${describe(a)} is claimed by no cell, not by ${k.cellId || k.instanceGuid}`);
  }
}

/** The crash count is forgiven once the instance stayed RUNNING past the reset window. */
export function forgiveCrashes(a: ActualLrp, now: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): ActualLrp {
  if (a.state !== 'RUNNING' || a.crashCount === 0 || now - a.since < policy.crashResetMs) return a;
  return next(a, { crashCount: 0, crashReason: '' }, now);
}

/** Optimistic concurrency: the caller read `expectedIndex`; anything else means someone moved first. */
export function checkTag(a: ActualLrp, expectedIndex: number | undefined): void {
  if (expectedIndex !== undefined && a.modificationTag.index !== expectedIndex) {
    throw new DroverError('conflict', `${describe(a)} was modified (tag ${a.modificationTag.index}, expected ${expectedIndex})`);
  }
}

export function isActive(a: ActualLrp): boolean {
  return a.state === 'CLAIMED' || a.state === 'RUNNING';
}
