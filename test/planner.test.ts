// The convergence planner: pure, so every test builds a snapshot, plans, and (for the
// multi-pass scenarios) applies the plan with the real state machine before planning again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eligibleCells, loadCellOf, nextClockChange, plan, PLAN_REASONS, targetInstances, type PlanAction, type Snapshot } from '../src/converge/planner.js';
import { claim, newActualLrp, requestStop, start, EMPTY_NET_INFO } from '../src/model/actual-lrp-machine.js';
import { transitionFor } from '../src/converge/transitions.js';
import type { ActualLrp, DesiredLrp, DroverPlacement, PlacementStrategy } from '../src/model/lrp.js';
import type { Cell } from '../src/model/cell.js';
import { validateDesiredLrp } from '../src/model/validate.js';
import { DEFAULT_RESTART_POLICY, restartDelayMs } from '../src/model/restart-policy.js';

const NOW = 1_700_000_000_000;

// ---- factories ------------------------------------------------------------------------

function desired(guid: string, over: Partial<DesiredLrp> = {}): DesiredLrp {
  return validateDesiredLrp({
    processGuid: guid,
    domain: 'dom',
    instances: 1,
    action: { run: { path: '/bin/app', args: [], dir: '', env: [], user: 'app' } },
    ...over,
  });
}

function placement(strategy: PlacementStrategy, sites: string[] = [], sections: string[] = []): DroverPlacement {
  return { strategy, sites, sections };
}

function actual(guid: string, index: number, over: Partial<ActualLrp> = {}): ActualLrp {
  return { ...newActualLrp({ processGuid: guid, index, domain: 'dom' }, NOW - 1_000), ...over };
}

function running(guid: string, index: number, cellId: string, over: Partial<ActualLrp> = {}): ActualLrp {
  return actual(guid, index, { state: 'RUNNING', actualLrpInstanceKey: { instanceGuid: `${guid}-${index}`, cellId }, ...over });
}

function claimed(guid: string, index: number, cellId: string, over: Partial<ActualLrp> = {}): ActualLrp {
  return running(guid, index, cellId, { state: 'CLAIMED', ...over });
}

function cell(cellId: string, over: Partial<Cell> = {}): Cell {
  return {
    cellId,
    repAddress: `http://${cellId}:1800`,
    zone: 'z1',
    site: 'site-a',
    sections: [],
    placementTags: [],
    capacity: { memoryMb: 8192, diskMb: 65536, containers: 256 },
    heartbeatAt: NOW,
    ttlMs: 10_000,
    ...over,
  };
}

function dead(c: Cell): Cell {
  return { ...c, heartbeatAt: NOW - 60_000 };
}

function snap(over: Partial<Snapshot>): Snapshot {
  return { now: NOW, desired: [], actual: [], cells: [], ...over };
}

function ofKind<K extends PlanAction['kind']>(actions: PlanAction[], kind: K): Extract<PlanAction, { kind: K }>[] {
  return actions.filter((a): a is Extract<PlanAction, { kind: K }> => a.kind === kind);
}

function compact(actions: PlanAction[]): string[] {
  return actions.map((a) => {
    const extra = 'cellId' in a ? `@${a.cellId}` : '';
    return `${a.kind} ${a.processGuid}/${a.index}${extra}`;
  });
}

// ---- a tiny applier and cell simulator over the real state machine -------------------

const keyOf = (guid: string, index: number): string => `${guid}/${index}`;

function apply(s: Snapshot, actions: PlanAction[]): Snapshot {
  const byKey = new Map(s.actual.map((a) => [keyOf(a.actualLrpKey.processGuid, a.actualLrpKey.index), a]));
  for (const act of actions) {
    const k = keyOf(act.processGuid, act.index);
    if (act.kind === 'create') {
      assert.ok(!byKey.has(k), `create of existing ${k}`);
      byKey.set(k, newActualLrp({ processGuid: act.processGuid, index: act.index, domain: act.domain }, s.now));
      continue;
    }
    const a = byKey.get(k);
    assert.ok(a, `${act.kind} of missing ${k}`);
    if (act.kind === 'retire') {
      if (a.state === 'UNCLAIMED' || a.state === 'CRASHED') byKey.delete(k);
      else byKey.set(k, requestStop(a, s.now));
    } else {
      byKey.set(k, transitionFor(act, a, s.now, s.policy ?? DEFAULT_RESTART_POLICY));
    }
  }
  return { ...s, actual: [...byKey.values()] };
}

/** Live cells claim and start what is targeted to them, and drop what they were told to stop. */
function cellsAct(s: Snapshot): Snapshot {
  const alive = new Set(s.cells.filter((c) => s.now - c.heartbeatAt <= c.ttlMs).map((c) => c.cellId));
  const out: ActualLrp[] = [];
  for (const a of s.actual) {
    if (a.stopRequested && alive.has(a.actualLrpInstanceKey.cellId)) continue;
    if (a.state === 'UNCLAIMED' && a.targetCellId && alive.has(a.targetCellId) && !a.stopRequested) {
      const k = { instanceGuid: `${a.actualLrpKey.processGuid}-${a.actualLrpKey.index}-${a.modificationTag.index}`, cellId: a.targetCellId };
      out.push(start(claim(a, k, s.now), k, EMPTY_NET_INFO, s.now));
      continue;
    }
    out.push(a);
  }
  return { ...s, actual: out };
}

/** Plan, apply, let the cells act; `passes` times. */
function converge(s: Snapshot, passes: number): Snapshot {
  for (let i = 0; i < passes; i++) s = cellsAct(apply(s, plan(s)));
  return s;
}

function cellsOf(s: Snapshot, guid: string): string[] {
  return s.actual
    .filter((a) => a.actualLrpKey.processGuid === guid && (a.state === 'RUNNING' || a.state === 'CLAIMED'))
    .map((a) => a.actualLrpInstanceKey.cellId)
    .sort();
}

// ---- desired vs actual ----------------------------------------------------------------

test('creates the missing indices and leaves healthy instances alone', () => {
  const s = snap({
    desired: [desired('web', { instances: 4 })],
    actual: [running('web', 1, 'c1'), running('web', 3, 'c1')],
    cells: [cell('c1')],
  });
  assert.deepEqual(plan(s), [
    { kind: 'create', processGuid: 'web', domain: 'dom', index: 0 },
    { kind: 'create', processGuid: 'web', domain: 'dom', index: 2 },
  ]);
});

test('retires extra indices and orphans, once', () => {
  const s = snap({
    desired: [desired('web', { instances: 2 })],
    actual: [
      running('web', 0, 'c1'),
      running('web', 1, 'c1'),
      running('web', 2, 'c1'),
      actual('web', 3, { targetCellId: 'c1' }),
      running('web', 4, 'c1', { stopRequested: true }), // already being stopped by its cell
      actual('web', 5, { stopRequested: true }), // no cell holds it: retire again so it is deleted
      running('gone', 0, 'c1'),
      actual('gone', 1, { state: 'CRASHED', crashCount: 9 }),
    ],
    cells: [cell('c1')],
  });
  const actions = plan(s);
  assert.deepEqual(compact(actions), ['retire gone/0', 'retire gone/1', 'retire web/2', 'retire web/3', 'retire web/5']);
  const reasons = ofKind(actions, 'retire').map((r) => r.reason);
  assert.deepEqual(reasons, [PLAN_REASONS.orphan, PLAN_REASONS.orphan, PLAN_REASONS.extraIndex, PLAN_REASONS.extraIndex, PLAN_REASONS.extraIndex]);
  // applied: nothing more to do for the retired ones
  const after = apply(s, actions);
  assert.deepEqual(compact(plan(after)), []);
});

test('a retired instance gets no other action in the same plan', () => {
  const s = snap({
    desired: [desired('web', { instances: 1 })],
    actual: [
      running('web', 1, 'dead-cell'), // would be suspect
      actual('web', 2, { state: 'CRASHED', crashCount: 1, since: 0 }), // would be restarted
      running('web', 3, 'c1', { crashCount: 2, since: 0 }), // would be forgiven
      actual('web', 4), // would be placed
    ],
    cells: [cell('c1')],
  });
  assert.deepEqual(compact(plan(s)), ['create web/0', 'retire web/1', 'retire web/2', 'retire web/3', 'retire web/4']);
});

test('a disabled LRP retires every instance', () => {
  const s = snap({
    desired: [desired('web', { instances: 3, enabled: false, disabledReason: 'crash loop' })],
    actual: [running('web', 0, 'c1'), claimed('web', 1, 'c1'), actual('web', 2, { state: 'CRASHED', crashCount: 5 })],
    cells: [cell('c1')],
  });
  const actions = plan(s);
  assert.deepEqual(compact(actions), ['retire web/0', 'retire web/1', 'retire web/2']);
  assert.ok(ofKind(actions, 'retire').every((r) => r.reason === PLAN_REASONS.disabled));
});

test('instances: 0 retires everything and creates nothing', () => {
  const s = snap({ desired: [desired('web', { instances: 0 })], actual: [running('web', 0, 'c1')], cells: [cell('c1')] });
  assert.deepEqual(compact(plan(s)), ['retire web/0']);
});

// ---- restart policy -------------------------------------------------------------------

test('a crashed instance restarts only after its back-off', () => {
  const delay4 = restartDelayMs(4); // 30 s
  const delay6 = restartDelayMs(6); // 120 s
  assert.equal(delay4, 30_000);
  assert.equal(delay6, 120_000);
  const s = snap({
    desired: [desired('web', { instances: 4 })],
    actual: [
      actual('web', 0, { state: 'CRASHED', crashCount: 4, since: NOW - delay4 + 1 }), // 1 ms early
      actual('web', 1, { state: 'CRASHED', crashCount: 4, since: NOW - delay4 }), // due
      actual('web', 2, { state: 'CRASHED', crashCount: 6, since: NOW - delay4 }), // longer back-off
      actual('web', 3, { state: 'CRASHED', crashCount: DEFAULT_RESTART_POLICY.maxRestarts, since: 0 }), // gave up
    ],
    cells: [cell('c1')],
  });
  assert.deepEqual(compact(plan(s)), ['restart web/1']);
  assert.deepEqual(compact(plan({ ...s, now: NOW + delay6 })), ['restart web/0', 'restart web/1', 'restart web/2']);
  // a custom policy is honoured
  const quick = { ...DEFAULT_RESTART_POLICY, backoffMinMs: 1 };
  assert.deepEqual(compact(plan({ ...s, policy: quick })), ['restart web/0', 'restart web/1', 'restart web/2']);
});

test('crash count is forgiven after the reset window', () => {
  const reset = DEFAULT_RESTART_POLICY.crashResetMs;
  const s = snap({
    desired: [desired('web', { instances: 3 })],
    actual: [
      running('web', 0, 'c1', { crashCount: 3, since: NOW - reset }),
      running('web', 1, 'c1', { crashCount: 3, since: NOW - reset + 1 }),
      running('web', 2, 'c1', { crashCount: 0, since: 0 }),
    ],
    cells: [cell('c1')],
  });
  const actions = plan(s);
  assert.deepEqual(compact(actions), ['forgive web/0']);
  const after = apply(s, actions);
  assert.equal(after.actual.find((a) => a.actualLrpKey.index === 0)!.crashCount, 0);
  assert.deepEqual(plan(after), []);
});

test('a claim that never started is unclaimed after the claim timeout', () => {
  const s = snap({
    desired: [desired('web', { instances: 3 })],
    actual: [
      claimed('web', 0, 'c1', { since: NOW - 30_000 }),
      claimed('web', 1, 'c1', { since: NOW - 29_999 }),
      claimed('web', 2, 'c1', { since: NOW - 5_000 }),
    ],
    cells: [cell('c1')],
  });
  const actions = plan(s);
  assert.deepEqual(compact(actions), ['unclaim web/0']);
  assert.equal(ofKind(actions, 'unclaim')[0]!.reason, PLAN_REASONS.claimTimeout);
  assert.deepEqual(compact(plan({ ...s, claimTimeoutMs: 1_000 })), ['unclaim web/0', 'unclaim web/1', 'unclaim web/2']);
});

// ---- dead cells -----------------------------------------------------------------------

test('dead cell: suspect, then unclaim, then placed on a live cell', () => {
  let s = snap({
    desired: [desired('web', { instances: 2 })],
    actual: [running('web', 0, 'c1'), claimed('web', 1, 'c1', { since: NOW - 100 })],
    cells: [dead(cell('c1')), cell('c2')],
  });
  const p1 = plan(s);
  assert.deepEqual(p1, [
    { kind: 'suspect', processGuid: 'web', index: 0, cellId: 'c1' },
    { kind: 'suspect', processGuid: 'web', index: 1, cellId: 'c1' },
  ]);
  s = apply(s, p1);
  const p2 = plan(s);
  assert.deepEqual(compact(p2), ['unclaim web/0', 'unclaim web/1']);
  assert.ok(ofKind(p2, 'unclaim').every((u) => u.reason === PLAN_REASONS.cellLost));
  s = apply(s, p2);
  assert.deepEqual(compact(plan(s)), ['place web/0@c2', 'place web/1@c2']);
});

test('a suspect whose cell came back is ordinary again; a stopping instance on a dead cell is left alone', () => {
  const s = snap({
    desired: [desired('web', { instances: 2 })],
    actual: [running('web', 0, 'c1', { presence: 'SUSPECT' }), running('web', 1, 'c2', { stopRequested: true })],
    cells: [cell('c1'), dead(cell('c2')), cell('c3')],
  });
  assert.deepEqual(plan(s), [{ kind: 'unsuspect', processGuid: 'web', index: 0 }]);
});

test('a missing cell counts as dead; a suspect stays put while no other cell can take it', () => {
  let s = snap({ desired: [desired('web')], actual: [running('web', 0, 'gone')], cells: [] });
  const p1 = plan(s);
  assert.deepEqual(compact(p1), ['suspect web/0@gone']);
  s = apply(s, p1);
  assert.deepEqual(plan(s), []); // nowhere to go: keep the record
  s = { ...s, cells: [cell('c9')] };
  assert.deepEqual(compact(plan(s)), ['unclaim web/0']);
});

test('an unclaimed instance targeted to a dead, missing or ineligible cell is placed again', () => {
  const s = snap({
    desired: [desired('web', { instances: 4, placementTags: ['gpu'] })],
    actual: [
      actual('web', 0, { targetCellId: 'c-dead' }),
      actual('web', 1, { targetCellId: 'c-missing' }),
      actual('web', 2, { targetCellId: 'c-plain' }), // live but lacks the tag
      actual('web', 3, { targetCellId: 'c-gpu' }), // fine: waits for the claim
    ],
    cells: [dead(cell('c-dead', { placementTags: ['gpu'] })), cell('c-plain'), cell('c-gpu', { placementTags: ['gpu'] })],
  });
  assert.deepEqual(compact(plan(s)), ['place web/0@c-gpu', 'place web/1@c-gpu', 'place web/2@c-gpu']);
});

// ---- fail placement -------------------------------------------------------------------

test('fail_placement when no live eligible cell, and only once per reason', () => {
  let s = snap({ desired: [desired('web', { instances: 2 })], actual: [actual('web', 0), actual('web', 1)], cells: [dead(cell('c1'))] });
  const p1 = plan(s);
  assert.deepEqual(p1, [
    { kind: 'fail_placement', processGuid: 'web', index: 0, reason: PLAN_REASONS.noEligibleCell },
    { kind: 'fail_placement', processGuid: 'web', index: 1, reason: PLAN_REASONS.noEligibleCell },
  ]);
  s = apply(s, p1);
  assert.deepEqual(plan(s), []); // idempotent
  // a different earlier reason is overwritten
  s = { ...s, actual: s.actual.map((a) => (a.actualLrpKey.index === 1 ? { ...a, placementError: 'something else' } : a)) };
  assert.deepEqual(compact(plan(s)), ['fail_placement web/1']);
  // and once a cell is back, both are placed
  s = { ...s, cells: [cell('c1')] };
  assert.deepEqual(compact(plan(s)), ['place web/0@c1', 'place web/1@c1']);
});

// ---- spread ---------------------------------------------------------------------------

test('spread: six new instances over three empty cells, two each', () => {
  const s = converge(snap({ desired: [desired('web', { instances: 6 })], cells: [cell('c3'), cell('c1'), cell('c2')] }), 3);
  assert.deepEqual(cellsOf(s, 'web'), ['c1', 'c1', 'c2', 'c2', 'c3', 'c3']);
  assert.deepEqual(plan(s), []);
});

test('spread: least loaded cell first, ties broken by fewer of the same LRP, then by cellId', () => {
  const s = snap({
    desired: [desired('web', { instances: 4 }), desired('other', { instances: 4 })],
    actual: [
      running('other', 0, 'a'),
      running('other', 1, 'a'),
      running('other', 2, 'b'),
      running('web', 0, 'b'), // b: load 2, one of web
      running('other', 3, 'c', { stopRequested: true }), // retiring: not counted
      actual('web', 1),
      actual('web', 2),
      actual('web', 3),
    ],
    cells: [cell('a'), cell('b'), cell('c')],
  });
  // loads a=2 b=2 c=0: c, c (1→2), then a vs b vs c at 2: web has b=1, c=2, a=0 → a
  assert.deepEqual(compact(plan(s)), ['place web/1@c', 'place web/2@c', 'place web/3@a']);
});

test('targeted: some LRPs plus the others\' load per cell plan what the full snapshot plans for them', () => {
  const others = [
    running('other', 0, 'a'),
    running('other', 1, 'a'),
    running('other', 2, 'b'),
    claimed('other', 3, 'c', { stopRequested: true }), // retiring: not counted
    actual('other', 4, { targetCellId: 'c' }), // on its way to c: counted
  ];
  const web = [running('web', 0, 'b'), actual('web', 1), actual('web', 2), actual('web', 3)];
  const cells = [cell('a'), cell('b'), cell('c')];
  const full = snap({ desired: [desired('web', { instances: 4 }), desired('other', { instances: 5 })], actual: [...others, ...web], cells });
  const otherLoad = new Map<string, number>();
  for (const a of others) {
    const id = a.stopRequested ? '' : loadCellOf({ state: a.state, cellId: a.actualLrpInstanceKey.cellId, targetCellId: a.targetCellId });
    if (id) otherLoad.set(id, (otherLoad.get(id) ?? 0) + 1);
  }
  const targeted = snap({ desired: [desired('web', { instances: 4 })], actual: web, cells, otherLoad });
  const planned = compact(plan(targeted));
  assert.deepEqual(planned, compact(plan(full).filter((p) => p.processGuid === 'web')));
  assert.deepEqual(planned, ['place web/1@c', 'place web/2@a', 'place web/3@b']);
  // without the others' load the same LRP would pile onto a
  assert.notDeepEqual(compact(plan({ ...targeted, otherLoad: undefined })), planned);
});

test('spread: placements made earlier in the same plan count as load', () => {
  const s = snap({
    desired: [desired('a-lrp', { instances: 3 }), desired('b-lrp', { instances: 3 })],
    actual: [0, 1, 2].flatMap((i) => [actual('a-lrp', i), actual('b-lrp', i)]),
    cells: [cell('c1'), cell('c2'), cell('c3')],
  });
  const places = ofKind(plan(s), 'place');
  const perCell = new Map<string, number>();
  for (const p of places) perCell.set(p.cellId, (perCell.get(p.cellId) ?? 0) + 1);
  assert.deepEqual([...perCell.entries()].sort(), [
    ['c1', 2],
    ['c2', 2],
    ['c3', 2],
  ]);
});

test('spread: the plan is deterministic whatever the input order', () => {
  const base = snap({
    desired: ['x', 'y', 'z'].map((g) => desired(g, { instances: 5 })),
    actual: [running('x', 0, 'c2'), running('y', 3, 'c1'), actual('z', 1), actual('x', 4, { state: 'CRASHED', crashCount: 1, since: 0 })],
    cells: [cell('c1'), cell('c2'), cell('c3'), cell('c4')],
  });
  const shuffled: Snapshot = { ...base, desired: [...base.desired].reverse(), actual: [...base.actual].reverse(), cells: [...base.cells].reverse() };
  assert.deepEqual(plan(base), plan(shuffled));
  assert.deepEqual(plan(base), plan(base));
});

// ---- eligibility: sites, sections, tags -----------------------------------------------

test('eligibleCells filters by liveness, site, section and tags, sorted by cellId', () => {
  const cells = [
    cell('n3', { site: 'east', sections: ['db'], placementTags: ['ssd'] }),
    cell('n1', { site: 'east', sections: ['web'] }),
    cell('n2', { site: 'east', sections: ['db', 'web'], placementTags: ['ssd', 'gpu'] }),
    dead(cell('n0', { site: 'east', sections: ['db'], placementTags: ['ssd'] })),
    cell('w1', { site: 'west', sections: ['db'], placementTags: ['ssd'] }),
  ];
  const ids = (d: DesiredLrp): string[] => eligibleCells(d, cells, NOW).map((c) => c.cellId);
  assert.deepEqual(ids(desired('p')), ['n1', 'n2', 'n3', 'w1']);
  assert.deepEqual(ids(desired('p', { placement: placement('spread', ['east']) })), ['n1', 'n2', 'n3']);
  assert.deepEqual(ids(desired('p', { placement: placement('spread', ['east'], ['db']) })), ['n2', 'n3']);
  // the section rule is per site: no west node serves 'web', so every west node is eligible
  assert.deepEqual(ids(desired('p', { placement: placement('spread', [], ['web']) })), ['n1', 'n2', 'w1']);
  assert.deepEqual(ids(desired('p', { placement: placement('spread', ['east'], ['web']) })), ['n1', 'n2']);
  assert.deepEqual(ids(desired('p', { placementTags: ['ssd'] })), ['n2', 'n3', 'w1']);
  assert.deepEqual(ids(desired('p', { placementTags: ['ssd', 'gpu'] })), ['n2']);
  assert.deepEqual(ids(desired('p', { placement: placement('spread', ['east'], ['db']), placementTags: ['gpu'] })), ['n2']);
  assert.deepEqual(ids(desired('p', { placement: placement('spread', ['north']) })), []);
});

test('Era rule: when no live node of the site serves the section, every live node of the site is eligible', () => {
  const cells = [
    cell('a2', { site: 'a', sections: ['web'] }),
    cell('a1', { site: 'a', sections: [] }),
    dead(cell('a0', { site: 'a', sections: ['billing'] })), // the only server of the section is dead
    cell('b1', { site: 'b', sections: ['billing'] }),
    cell('b2', { site: 'b', sections: [] }),
  ];
  const ids = (d: DesiredLrp): string[] => eligibleCells(d, cells, NOW).map((c) => c.cellId);
  assert.deepEqual(ids(desired('m', { placement: placement('leader', ['a'], ['billing']) })), ['a1', 'a2']);
  assert.deepEqual(ids(desired('m', { placement: placement('leader', ['b'], ['billing']) })), ['b1']);
  // applied per site: site a falls back to all its nodes, site b keeps to its serving node
  assert.deepEqual(ids(desired('m', { placement: placement('every-cell', ['a', 'b'], ['billing']) })), ['a1', 'a2', 'b1']);
  // once a0 is back, it is the only eligible node of site a
  const back = cells.map((c) => (c.cellId === 'a0' ? { ...c, heartbeatAt: NOW } : c));
  assert.deepEqual(
    eligibleCells(desired('m', { placement: placement('leader', ['a'], ['billing']) }), back, NOW).map((c) => c.cellId),
    ['a0'],
  );
});

test('placement honours sites, sections and tags', () => {
  const s = snap({
    desired: [
      desired('by-site', { instances: 2, placement: placement('spread', ['west']) }),
      desired('by-section', { instances: 2, placement: placement('spread', ['east'], ['db']) }),
      desired('by-tag', { instances: 2, placementTags: ['gpu'] }),
      desired('fallback', { instances: 2, placement: placement('spread', ['east'], ['nobody']) }),
    ],
    actual: ['by-site', 'by-section', 'by-tag', 'fallback'].flatMap((g) => [actual(g, 0), actual(g, 1)]),
    cells: [
      cell('e1', { site: 'east', sections: ['db'] }),
      cell('e2', { site: 'east', sections: ['web'], placementTags: ['gpu'] }),
      cell('w1', { site: 'west', sections: ['db'] }),
    ],
  });
  const where = (guid: string): string[] =>
    ofKind(plan(s), 'place')
      .filter((p) => p.processGuid === guid)
      .map((p) => p.cellId)
      .sort();
  assert.deepEqual(where('by-site'), ['w1', 'w1']);
  assert.deepEqual(where('by-section'), ['e1', 'e1']);
  assert.deepEqual(where('by-tag'), ['e2', 'e2']);
  assert.deepEqual(where('fallback'), ['e1', 'e2']);
});

// ---- every-cell -----------------------------------------------------------------------

test('every-cell: one instance per live eligible cell, growing when a cell joins', () => {
  let s = snap({
    desired: [desired('agent', { instances: 1, placement: placement('every-cell', ['a']) })],
    cells: [cell('n2', { site: 'a' }), cell('n1', { site: 'a' }), cell('n3', { site: 'a' }), cell('x1', { site: 'b' }), dead(cell('n0', { site: 'a' }))],
  });
  assert.equal(targetInstances(s.desired[0]!, 3), 3);
  assert.deepEqual(compact(plan(s)), ['create agent/0', 'create agent/1', 'create agent/2']);
  s = apply(s, plan(s));
  assert.deepEqual(compact(plan(s)), ['place agent/0@n1', 'place agent/1@n2', 'place agent/2@n3']);
  s = cellsAct(apply(s, plan(s)));
  assert.deepEqual(cellsOf(s, 'agent'), ['n1', 'n2', 'n3']);
  assert.deepEqual(plan(s), []);

  // a cell joins: one more index, placed on the newcomer
  s = { ...s, cells: [...s.cells, cell('n4', { site: 'a' })] };
  assert.deepEqual(compact(plan(s)), ['create agent/3']);
  s = apply(s, plan(s));
  assert.deepEqual(compact(plan(s)), ['place agent/3@n4']);
  s = converge(s, 2);
  assert.deepEqual(cellsOf(s, 'agent'), ['n1', 'n2', 'n3', 'n4']);
  assert.deepEqual(plan(s), []);
});

test('every-cell: instances: 0 means none, and an extra unplaced index fails instead of doubling up', () => {
  const zero = snap({ desired: [desired('agent', { instances: 0, placement: placement('every-cell') })], cells: [cell('n1')] });
  assert.deepEqual(plan(zero), []);
  const s = snap({
    desired: [desired('agent', { placement: placement('every-cell') })],
    actual: [running('agent', 0, 'n1'), running('agent', 1, 'n1'), actual('agent', 2)],
    cells: [cell('n1'), cell('n2'), cell('n3')],
  });
  // n2 and n3 have none: index 2 goes to n2; nothing is placed on n1 again
  assert.deepEqual(compact(plan(s)), ['place agent/2@n2']);
  const full = snap({
    desired: [desired('agent', { placement: placement('every-cell') })],
    actual: [running('agent', 0, 'n1'), actual('agent', 1)],
    cells: [cell('n1'), cell('n2')],
  });
  const busy = { ...full, actual: [...full.actual, running('agent', 9, 'n2')] }; // index 9 is extra, n2 is being freed
  assert.deepEqual(compact(plan(busy)), ['place agent/1@n2', 'retire agent/9']);
  const crowded = { ...full, actual: [running('agent', 0, 'n1'), actual('agent', 1), running('agent', 1, 'n2', { presence: 'EVACUATING' })] };
  const p = plan(crowded);
  assert.deepEqual(p, [{ kind: 'fail_placement', processGuid: 'agent', index: 1, reason: PLAN_REASONS.everyCellFull }]);
});

// ---- leader ---------------------------------------------------------------------------

test('leader: goes to the first live eligible cell by cellId, and stays there', () => {
  let s = snap({
    desired: [desired('boss', { instances: 3, placement: placement('leader') })],
    cells: [cell('n3'), cell('n2'), dead(cell('n1'))],
  });
  assert.equal(s.desired[0]!.instances, 1);
  assert.deepEqual(compact(plan(s)), ['create boss/0']);
  s = apply(s, plan(s));
  assert.deepEqual(compact(plan(s)), ['place boss/0@n2']);
  s = cellsAct(apply(s, plan(s)));
  assert.deepEqual(cellsOf(s, 'boss'), ['n2']);
  // n1 comes back: the leader does not flap
  s = { ...s, cells: s.cells.map((c) => (c.cellId === 'n1' ? { ...c, heartbeatAt: NOW } : c)) };
  assert.deepEqual(plan(s), []);
});

test('leader: the only instance of instances > 1 (even unvalidated) is index 0', () => {
  const d = { ...desired('boss', { placement: placement('leader') }), instances: 5 };
  const s = snap({ desired: [d], actual: [running('boss', 2, 'n1')], cells: [cell('n1')] });
  assert.deepEqual(compact(plan(s)), ['create boss/0', 'retire boss/2']);
});

test('leader: moves to the next cell when its cell dies (suspect, unclaim, place)', () => {
  let s = converge(
    snap({ desired: [desired('boss', { placement: placement('leader', [], ['ctl']) })], cells: [cell('n1', { sections: ['ctl'] }), cell('n2', { sections: ['ctl'] }), cell('n3')] }),
    3,
  );
  assert.deepEqual(cellsOf(s, 'boss'), ['n1']);
  s = { ...s, cells: s.cells.map((c) => (c.cellId === 'n1' ? dead(c) : c)) };
  const p1 = plan(s);
  assert.deepEqual(compact(p1), ['suspect boss/0@n1']);
  s = cellsAct(apply(s, p1));
  const p2 = plan(s);
  assert.deepEqual(compact(p2), ['unclaim boss/0']);
  s = cellsAct(apply(s, p2));
  const p3 = plan(s);
  assert.deepEqual(compact(p3), ['place boss/0@n2']);
  s = cellsAct(apply(s, p3));
  assert.deepEqual(cellsOf(s, 'boss'), ['n2']);
  assert.deepEqual(plan(s), []);
});

test('leader: never places while another instance may still run', () => {
  const d = desired('boss', { placement: placement('leader') });
  const cells = [cell('n1'), cell('n2')];
  // index 1 is still being stopped on n2
  const stopping = snap({ desired: [d], actual: [actual('boss', 0), running('boss', 1, 'n2', { stopRequested: true })], cells });
  assert.deepEqual(plan(stopping), []);
  // an evacuating copy is still running
  const evac = snap({ desired: [d], actual: [actual('boss', 0), running('boss', 0, 'n2', { presence: 'EVACUATING' })], cells });
  assert.deepEqual(plan(evac), []);
  // a running extra is retired in this plan, the unclaimed index 0 waits for the next one
  const extra = snap({ desired: [d], actual: [actual('boss', 0), running('boss', 1, 'n2')], cells });
  assert.deepEqual(compact(plan(extra)), ['retire boss/1']);
  const after = cellsAct(apply(extra, plan(extra)));
  assert.deepEqual(compact(plan(after)), ['place boss/0@n1']);
});

// ---- scale ----------------------------------------------------------------------------

test('plans 100k instances well within bounds', () => {
  const lrps = 2_000;
  const perLrp = 50;
  const cells: Cell[] = [];
  for (let c = 0; c < 500; c++) cells.push(cell(`cell-${String(c).padStart(4, '0')}`, { site: c % 2 ? 'east' : 'west', sections: c % 5 ? [] : ['db'] }));
  for (let c = 0; c < 10; c++) cells[c] = dead(cells[c]!);
  const desiredLrps: DesiredLrp[] = [];
  const actuals: ActualLrp[] = [];
  const proto = newActualLrp({ processGuid: 'p', index: 0, domain: 'dom' }, NOW);
  for (let l = 0; l < lrps; l++) {
    const guid = `lrp-${l}`;
    const strategy: PlacementStrategy = l % 50 === 0 ? 'leader' : 'spread';
    desiredLrps.push(desired(guid, { instances: perLrp, placement: placement(strategy, l % 3 ? [] : ['east'], l % 7 ? [] : ['db']) }));
    const n = strategy === 'leader' ? 1 : perLrp;
    for (let i = 0; i < n; i++) {
      const k = l * perLrp + i;
      const key = { processGuid: guid, index: i, domain: 'dom' };
      const cellId = cells[k % cells.length]!.cellId;
      if (k % 10 === 0) actuals.push({ ...proto, actualLrpKey: key }); // unplaced
      else if (k % 97 === 0) actuals.push({ ...proto, actualLrpKey: key, state: 'CRASHED', crashCount: 5, since: NOW - 100_000 });
      else actuals.push({ ...proto, actualLrpKey: key, state: 'RUNNING', actualLrpInstanceKey: { instanceGuid: `g${k}`, cellId }, crashCount: k % 13 === 0 ? 1 : 0, since: 0 });
    }
  }
  const s = snap({ desired: desiredLrps, actual: actuals, cells });
  assert.ok(actuals.length >= 95_000);
  plan(s); // warm-up
  const t0 = performance.now();
  const actions = plan(s);
  const ms = performance.now() - t0;
  console.log(`planner: ${actuals.length} actual LRPs, ${desiredLrps.length} desired, ${cells.length} cells -> ${actions.length} actions in ${ms.toFixed(1)} ms`);
  assert.ok(ms < 5000, `plan took ${ms} ms`);
  assert.ok(ofKind(actions, 'place').length > 9_000);

  // cold start: 100k unplaced instances of 1000 LRPs over 500 cells, every one placed
  const cold = snap({
    desired: Array.from({ length: 1_000 }, (_, l) => desired(`cold-${l}`, { instances: 100 })),
    actual: Array.from({ length: 100_000 }, (_, k) => ({ ...proto, actualLrpKey: { processGuid: `cold-${Math.floor(k / 100)}`, index: k % 100, domain: 'dom' } })),
    cells: cells.map((c) => ({ ...c, heartbeatAt: NOW })),
  });
  const t1 = performance.now();
  const coldActions = plan(cold);
  const coldMs = performance.now() - t1;
  console.log(`planner: cold start, 100000 unplaced over 500 cells -> ${coldActions.length} placements in ${coldMs.toFixed(1)} ms`);
  assert.ok(coldMs < 5000, `cold plan took ${coldMs} ms`);
  const perCell = new Map<string, number>();
  for (const p of ofKind(coldActions, 'place')) perCell.set(p.cellId, (perCell.get(p.cellId) ?? 0) + 1);
  assert.equal(perCell.size, 500);
  assert.ok([...perCell.values()].every((n) => n === 200), 'evenly spread');
});

test('nextClockChange: the plan changes at that time, not a millisecond before, for each clock-driven action', () => {
  const longLived = cell('c1', { ttlMs: 3_600_000 });
  const cases: [string, Snapshot, PlanAction['kind']][] = [
    ['a live cell goes silent', { now: NOW, desired: [desired('g')], actual: [running('g', 0, 'c1')], cells: [cell('c1', { heartbeatAt: NOW - 4_000 }), cell('c2')] }, 'suspect'],
    ['a back-off ends', { now: NOW, desired: [desired('g')], actual: [actual('g', 0, { state: 'CRASHED', crashCount: 5, crashReason: 'exit status 1', since: NOW - 1_000 })], cells: [longLived] }, 'restart'],
    ['a claim times out', { now: NOW, desired: [desired('g')], actual: [claimed('g', 0, 'c1', { since: NOW - 1_000 })], cells: [longLived] }, 'unclaim'],
    ['a crash count is forgiven', { now: NOW, desired: [desired('g')], actual: [running('g', 0, 'c1', { crashCount: 2, since: NOW - 1_000 })], cells: [longLived] }, 'forgive'],
  ];
  for (const [what, snapshot, kind] of cases) {
    const at = nextClockChange(snapshot);
    assert.ok(Number.isFinite(at) && at > NOW, what);
    assert.deepEqual(plan({ ...snapshot, now: at - 1 }), plan(snapshot), what);
    assert.deepEqual(
      plan({ ...snapshot, now: at }).map((a) => a.kind),
      [kind],
      what,
    );
  }
});

test('nextClockChange: never, with nothing the clock can change', () => {
  const stopping = running('h', 0, 'c1', { state: 'CLAIMED', stopRequested: true });
  const gaveUp = actual('g', 0, { state: 'CRASHED', crashCount: DEFAULT_RESTART_POLICY.maxRestarts, since: NOW });
  assert.equal(nextClockChange({ now: NOW, desired: [desired('g'), desired('h')], actual: [gaveUp, stopping], cells: [dead(cell('c1'))] }), Infinity);
  assert.equal(nextClockChange({ now: NOW, desired: [desired('u')], actual: [actual('u', 0)], cells: [] }), Infinity);
});
