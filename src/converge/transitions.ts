// What each plan action does to one ActualLRP, as a state-machine transition (pure).
// `create` and `retire` are not transitions of an existing record: the applier handles them.

import { clearSuspect, failPlacement, forgiveCrashes, markSuspect, place, unclaim } from '../model/actual-lrp-machine.js';
import { fail } from '../model/errors.js';
import type { ActualLrp } from '../model/lrp.js';
import { DEFAULT_RESTART_POLICY, type RestartPolicy } from '../model/restart-policy.js';
import type { PlanAction } from './planner.js';

export function transitionFor(action: PlanAction, a: ActualLrp, now: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): ActualLrp {
  switch (action.kind) {
    case 'restart':
      if (a.state !== 'CRASHED') fail('invalid_transition', 'no longer crashed');
      return unclaim(a, now);
    case 'unclaim':
      return unclaim(a, now);
    case 'suspect':
      return markSuspect(a, now);
    case 'unsuspect':
      return clearSuspect(a, now);
    case 'place':
      return place(a, action.cellId, now);
    case 'fail_placement':
      return failPlacement(a, action.reason, now);
    case 'forgive':
      return forgiveCrashes(a, now, policy);
    default:
      fail('internal', `${action.kind} is not a transition`);
  }
}
