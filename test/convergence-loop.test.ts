// The convergence loop driven by commits alone (its interval is an hour here): with no cell,
// every new instance is marked unplaceable, also when the LRP is scaled up after its own
// fail_placement was announced (the loop skips only announcements of its own writes).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { desireLrp, updateDesiredLrp } from '../src/core/desired-lrps.js';
import { ConvergenceLoop } from '../src/converge/loop.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import { storeFixtures } from './helpers.js';

const P = OPEN_MODE_PRINCIPAL;
const HOUR = 3_600_000;
const [sqlite] = storeFixtures();

describe('convergence loop, driven by commits alone', () => {
  let ctx: CoreContext;
  let loop: ConvergenceLoop;
  before(async () => {
    ctx = { store: await sqlite!.open(), bus: new EventBus(), log: pino({ level: 'silent' }), now: Date.now };
    loop = new ConvergenceLoop(ctx, { intervalMs: HOUR, debounceMs: 5, isLeader: () => true });
    loop.start();
  });
  after(async () => {
    loop.stop();
    await ctx.store.close();
    await sqlite!.cleanup();
  });

  /** the indexes of `guid`'s instances marked unplaceable, once `count` are (or after 5 s) */
  const unplaceable = async (guid: string, count: number): Promise<number[]> => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const marked = (await ctx.store.listActualLrps({ processGuid: guid })).filter((a) => a.placementError).map((a) => a.actualLrpKey.index);
      if (marked.length >= count || Date.now() > deadline) return marked;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  it('marks new instances unplaceable, and those of a scale-up after that', async () => {
    const lrp = (guid: string) => ({ processGuid: guid, domain: 'loop', instances: 1, action: { run: { path: '/bin/true', args: [], dir: '', env: [], user: '' } } });
    await Promise.all(['l-1', 'l-2', 'l-3'].map((g) => desireLrp(ctx, P, lrp(g))));
    for (const g of ['l-1', 'l-2', 'l-3']) assert.deepEqual(await unplaceable(g, 1), [0]);
    await updateDesiredLrp(ctx, P, 'l-2', { instances: 3 });
    assert.deepEqual(await unplaceable('l-2', 3), [0, 1, 2]);
  });
});
