// The desire use case on both stores, without processes: the test plays the cell. A guid
// desired again while an instance of its removed namesake is still stopping: the new LRP's
// instances take the free indexes, the stopping one keeps its own until its cell removes it.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { EventBus, type CoreContext, type Touched } from '../src/core/context.js';
import { desireLrp, removeDesiredLrp } from '../src/core/desired-lrps.js';
import { claimActualLrp, startActualLrp } from '../src/core/instance-lifecycle.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import { lrpInput, storeFixtures } from './helpers.js';

const P = OPEN_MODE_PRINCIPAL;
const CELL = { instanceGuid: 'old-1', cellId: 'cell-1' };

const lrp = (guid: string, instances: number) => lrpInput(guid, 'desire', instances);

for (const fixture of storeFixtures()) {
  describe(`desire on ${fixture.name}`, () => {
    let ctx: CoreContext;
    const announced: Touched[] = [];
    before(async () => {
      ctx = { store: await fixture.open(), bus: new EventBus(), log: pino({ level: 'silent' }), now: Date.now };
      ctx.bus.on('committed', (_id: number, touched?: Touched) => touched && announced.push(touched));
    });
    after(async () => {
      await ctx.store.close();
      await fixture.cleanup();
    });

    it('creates the instances a guid desired again can have, beside one of its removed namesake that is stopping', async () => {
      await desireLrp(ctx, P, lrp('again', 1));
      const key = { processGuid: 'again', index: 0 };
      await claimActualLrp(ctx, P, key, CELL);
      await startActualLrp(ctx, P, key, CELL, undefined);
      await removeDesiredLrp(ctx, P, 'again');
      const last = await ctx.store.lastEventId();
      await new Promise((resolve) => setImmediate(resolve)); // the removal's announcement
      announced.length = 0;

      await desireLrp(ctx, P, lrp('again', 2));
      const actual = await ctx.store.listActualLrps({ processGuid: 'again' });
      assert.deepEqual(
        actual.map((a) => [a.actualLrpKey.index, a.state, a.actualLrpInstanceKey.instanceGuid, a.stopRequested]),
        [
          [0, 'RUNNING', 'old-1', true],
          [1, 'UNCLAIMED', '', false],
        ],
      );
      const events = await ctx.store.listEvents(last, 10);
      assert.deepEqual(
        events.map((e) => [e.type, (e.payload.actualLrp as { actualLrpKey?: { index: number } } | undefined)?.actualLrpKey?.index]),
        [
          ['desired_lrp_created', undefined],
          ['actual_lrp_created', 1],
        ],
      );
      // the announcement says so: one instance created for two desired (the loop reads this LRP)
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        announced.map((t) => t.created.get('again')?.actual.map((a) => a.actualLrpKey.index)),
        [[1]],
      );
    });

    it('refuses a duplicate among desires made together, and stores and announces each other one once', async () => {
      // on SQLite these share one group commit: the failing member makes the group run again
      announced.length = 0;
      const outcomes = await Promise.allSettled(['t-1', 't-2', 't-1', 't-3'].map((guid) => desireLrp(ctx, P, lrp(guid, 1))));
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
      );
      await new Promise((resolve) => setImmediate(resolve));
      const counts = new Map<string, number>();
      for (const t of announced) for (const [guid, n] of t.processGuids) counts.set(guid, (counts.get(guid) ?? 0) + n);
      assert.deepEqual([...counts].sort(), [
        ['t-1', 2],
        ['t-2', 2],
        ['t-3', 2],
      ]);
      const events = (await ctx.store.listEvents(0, 1000)).filter((e) => e.type === 'actual_lrp_created');
      const created = events.map((e) => (e.payload.actualLrp as { actualLrpKey: { processGuid: string } }).actualLrpKey.processGuid).filter((g) => g.startsWith('t-'));
      assert.deepEqual(created.sort(), ['t-1', 't-2', 't-3']);
    });
  });
}
