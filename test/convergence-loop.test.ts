// The convergence loop driven by commits alone (its interval is an hour here): with no cell,
// every new instance is marked unplaceable, also when the LRP is scaled up after its own
// fail_placement was announced (the loop skips only announcements of its own writes).
// Then the interval: with nothing the clock changes, it plans the commits no announcement
// told of (another replica's on a shared store), and only those.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { desireLrp, updateDesiredLrp } from '../src/core/desired-lrps.js';
import { ConvergenceLoop } from '../src/converge/loop.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import { lrpInput, storeFixtures } from './helpers.js';

const P = OPEN_MODE_PRINCIPAL;
const HOUR = 3_600_000;
const [sqlite] = storeFixtures();

const lrp = (guid: string) => lrpInput(guid, 'loop', 1);

/** A loop on a fresh SQLite store, torn down after the suite. */
function loopFixture(intervalMs: number, debounceMs = 5, log = pino({ level: 'silent' })): { ctx: () => CoreContext; loop: () => ConvergenceLoop } {
  let ctx: CoreContext;
  let loop: ConvergenceLoop;
  before(async () => {
    ctx = { store: await sqlite!.open(), bus: new EventBus(), log, now: Date.now };
    loop = new ConvergenceLoop(ctx, { intervalMs, debounceMs, isLeader: () => true });
    loop.start();
  });
  after(async () => {
    loop.stop();
    await ctx.store.close();
    await sqlite!.cleanup();
  });
  return { ctx: () => ctx, loop: () => loop };
}

/** the indexes of `guid`'s instances marked unplaceable, once `count` are (or after `waitMs`) */
async function unplaceableOf(ctx: CoreContext, guid: string, count: number, waitMs = 5000): Promise<number[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const marked = (await ctx.store.listActualLrps({ processGuid: guid })).filter((a) => a.placementError).map((a) => a.actualLrpKey.index);
    if (marked.length >= count || Date.now() > deadline) return marked;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('convergence loop, driven by commits alone', () => {
  const { ctx: fixture } = loopFixture(HOUR);

  it('marks new instances unplaceable, and those of a scale-up after that', async () => {
    const ctx = fixture();
    const unplaceable = (guid: string, count: number) => unplaceableOf(ctx, guid, count);
    await Promise.all(['l-1', 'l-2', 'l-3'].map((g) => desireLrp(ctx, P, lrp(g))));
    for (const g of ['l-1', 'l-2', 'l-3']) assert.deepEqual(await unplaceable(g, 1), [0]);
    await updateDesiredLrp(ctx, P, 'l-2', { instances: 3 });
    assert.deepEqual(await unplaceable('l-2', 3), [0, 1, 2]);
  });
});

describe('convergence loop, a burst of commits', () => {
  // The loop's debug log tells each pass with actions, and how many LRPs it read and how many
  // it planned from the announcement of their creation.
  const passes: { read?: number; created?: number; actions: number }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void passes.push(JSON.parse(line) as (typeof passes)[number]) });
  const { ctx: fixture } = loopFixture(HOUR, 1000, log);
  const burst = (ctx: CoreContext, prefix: string, n: number) => Promise.all(Array.from({ length: n }, (_, i) => desireLrp(ctx, P, lrp(`${prefix}-${i}`))));
  const allUnplaceable = async (ctx: CoreContext, prefix: string, n: number) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const marked = (await ctx.store.listActualLrps({ domain: 'loop' })).filter((a) => a.placementError && a.actualLrpKey.processGuid.startsWith(`${prefix}-`));
      if (marked.length >= n || Date.now() > deadline) return marked.length;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const targets = () => passes.map((p) => ({ read: p.read, created: p.created }));

  it('plans more LRPs than one read takes in a targeted pass, not a pass over the whole store', async () => {
    const ctx = fixture();
    await burst(ctx, 'a', 1000);
    assert.equal(await allUnplaceable(ctx, 'a', 1000), 1000);
    passes.length = 0;
    // The only full pass so far, at start, saw no LRP: the loop counts those announced since.
    await burst(ctx, 'b', 1200); // one debounce: one pass for all of them, planned as announced
    assert.equal(await allUnplaceable(ctx, 'b', 1200), 1200);
    assert.deepEqual(targets(), [{ read: 0, created: 1200 }]);
    passes.length = 0;
    // The LRPs a pass reads back (padded slices repeat a guid: counted once).
    const read = new Set<string>();
    const store = ctx.store;
    const listPlanInfos = store.listDesiredLrpPlanInfos.bind(store);
    store.listDesiredLrpPlanInfos = (filter) => {
      for (const guid of filter?.processGuids ?? ['(all)']) read.add(guid);
      return listPlanInfos(filter);
    };
    try {
      // scaled up: read back, in two slices of guids
      await Promise.all(Array.from({ length: 1200 }, (_, i) => updateDesiredLrp(ctx, P, `b-${i}`, { instances: 2 })));
      assert.equal(await allUnplaceable(ctx, 'b', 2400), 2400);
      assert.deepEqual(targets(), [{ read: 1200, created: 0 }]);
      assert.equal(read.size, 1200);
      // The pass wrote its 1,200 fail_placements in three commits; the announcement of each
      // is known as the pass's own, so no LRP is read again (past the 1 s debounce).
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(read.size, 1200);
    } finally {
      store.listDesiredLrpPlanInfos = listPlanInfos;
    }
  });

  it('reads an LRP changed after its creation before the pass, and plans what it holds then', async () => {
    const ctx = fixture();
    passes.length = 0;
    await desireLrp(ctx, P, lrp('c-1'));
    await updateDesiredLrp(ctx, P, 'c-1', { instances: 3 }); // within the debounce
    assert.deepEqual(await unplaceableOf(ctx, 'c-1', 3), [0, 1, 2]);
    assert.deepEqual(targets(), [{ read: 1, created: 0 }]);
  });
});

describe('convergence loop, interval passes', () => {
  const INTERVAL = 50;
  const { ctx: fixture, loop } = loopFixture(INTERVAL);

  it('plans a commit no announcement told of (another replica’s), and runs no pass while nothing is due', async () => {
    const ctx = fixture();
    await new Promise((resolve) => setTimeout(resolve, 4 * INTERVAL)); // the start's full pass is done
    // another replica: the same store, its own bus (nothing reaches this process's loop)
    await desireLrp({ ...ctx, bus: new EventBus() }, P, lrp('r-1'));
    assert.deepEqual(await unplaceableOf(ctx, 'r-1', 1), [0]);
    await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL)); // the announcement of that fail_placement
    const last = loop().lastPass;
    assert.equal(last?.clockChangeAt, Infinity, 'no cell, nothing claimed or crashed: the clock changes nothing');
    await new Promise((resolve) => setTimeout(resolve, 10 * INTERVAL));
    assert.equal(loop().lastPass, last, 'no pass while no commit came and nothing was due');
  });
});
