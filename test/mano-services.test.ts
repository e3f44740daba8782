// The service use cases under the MANO adapter, on both stores and without processes: the
// test plays the cell (claim, start, remove) so each lifecycle step can be checked.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { claimActualLrp, removeActualLrp, startActualLrp } from '../src/core/instance-lifecycle.js';
import { instantiateService, serviceStatus, settleServices, terminateService, waitForService } from '../src/core/services.js';
import { DroverError, type ErrorKind } from '../src/model/errors.js';
import { OPEN_MODE_PRINCIPAL, type Principal } from '../src/model/principal.js';
import { lrpInput, storeFixtures } from './helpers.js';

const P = OPEN_MODE_PRINCIPAL;
const ALICE: Principal = { name: 'alice', roles: ['owner'] };
const BOB: Principal = { name: 'bob', roles: ['owner'] };
const CELL = { instanceGuid: 'ig', cellId: 'cell-1' };

const lrp = (guid: string, instances: number) => lrpInput(guid, 'mano', instances);

async function refused(kind: ErrorKind, p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof DroverError && e.kind === kind);
}

for (const fixture of storeFixtures()) {
  describe(`service use cases on ${fixture.name}`, () => {
    let ctx: CoreContext;
    before(async () => {
      ctx = { store: await fixture.open(), bus: new EventBus(), log: pino({ level: 'silent' }), now: Date.now };
    });
    after(async () => {
      await ctx.store.close();
      await fixture.cleanup();
    });

    const instances = async (guid: string) => (await ctx.store.listActualLrps({ processGuid: guid })).map((a) => a.actualLrpKey);
    const state = async (id: string) => (await serviceStatus(ctx, P, id)).service.state;

    it('instantiates in one transaction, becomes READY when every instance runs, TERMINATED when none is left', async () => {
      const s = await instantiateService(ctx, ALICE, { id: 's1', name: 'svc', kind: 'mano', lrps: [lrp('s1-a', 1), lrp('s1-b', 2)] });
      assert.equal(s.state, 'INSTANTIATING');
      assert.equal(s.owner, 'alice');
      const status = await serviceStatus(ctx, P, 's1');
      assert.deepEqual(
        status.lrps.map((l) => [l.desired.serviceId, l.actual.length]),
        [
          ['s1', 1],
          ['s1', 2],
        ],
      );
      await refused('exists', instantiateService(ctx, ALICE, { id: 's1', name: 'svc', kind: 'mano', lrps: [lrp('other', 1)] }));
      // a bad LRP fails the whole service: nothing is left behind
      await refused('invalid_request', instantiateService(ctx, ALICE, { id: 's2', name: 'svc', kind: 'mano', lrps: [lrp('s2-a', 1), lrp('bad guid', 1)] }));
      await refused('not_found', serviceStatus(ctx, P, 's2'));
      assert.deepEqual(await instances('s2-a'), []);

      const ready = waitForService(ctx, 's1', (x) => x.state === 'READY', 5000);
      for (const key of [...(await instances('s1-a')), ...(await instances('s1-b'))]) {
        await claimActualLrp(ctx, P, key, CELL);
        await settleServices(ctx);
        assert.equal(await state('s1'), 'INSTANTIATING');
        await startActualLrp(ctx, P, key, CELL, undefined);
      }
      await settleServices(ctx);
      assert.equal((await ready)?.state, 'READY');

      await refused('forbidden', terminateService(ctx, BOB, 's1'));
      const t = await terminateService(ctx, ALICE, 's1', { note: 'x' });
      assert.equal(t.state, 'TERMINATING');
      assert.equal(t.attributes.note, 'x');
      const stopping = await serviceStatus(ctx, P, 's1');
      assert.ok(stopping.lrps.every((l) => !l.desired.enabled && l.actual.every((a) => a.stopRequested)));
      await refused('invalid_transition', terminateService(ctx, ALICE, 's1'));

      const keys = [...(await instances('s1-a')), ...(await instances('s1-b'))];
      for (const key of keys) {
        await settleServices(ctx);
        assert.equal(await state('s1'), 'TERMINATING');
        await removeActualLrp(ctx, P, key, CELL);
      }
      await settleServices(ctx);
      const done = await serviceStatus(ctx, P, 's1');
      assert.equal(done.service.state, 'TERMINATED');
      assert.deepEqual(done.lrps, []);
      assert.equal(await ctx.store.getDesiredLrp('s1-a'), undefined);
      await refused('invalid_transition', terminateService(ctx, P, 's1'));
    });

    it('refuses to terminate an unknown or shut-down service; a service with no instances terminates at once', async () => {
      await refused('not_found', terminateService(ctx, P, 'nope'));
      const s = await instantiateService(ctx, P, { id: 's3', name: 'svc', kind: 'mano', lrps: [lrp('s3-a', 1)] });
      await ctx.store.transaction((tx) => tx.upsertService({ ...s, shutdown: true }));
      await refused('shut_down', terminateService(ctx, P, 's3'));
      await ctx.store.transaction((tx) => tx.upsertService({ ...s, shutdown: false }));
      // its instance was never claimed: stopping deletes it, so nothing is left to wait for
      await terminateService(ctx, P, 's3');
      await settleServices(ctx);
      assert.equal(await state('s3'), 'TERMINATED');
    });

    it("checks a terminate's guard in its transaction: another kind is not_found; the same request again changes nothing", async () => {
      await instantiateService(ctx, P, { id: 's5', name: 'svc', kind: 'geni', lrps: [lrp('s5-a', 1)] });
      await refused('not_found', terminateService(ctx, P, 's5', {}, { kind: 'mano' }));
      assert.equal(await state('s5'), 'INSTANTIATING');
      const byR1 = (x: { attributes: Record<string, unknown> }) => x.attributes.request === 'r1';
      const t = await terminateService(ctx, P, 's5', { request: 'r1' }, { kind: 'geni', terminatedBy: byR1 });
      assert.equal(t.state, 'TERMINATING');
      const eventsBefore = (await ctx.store.listEvents(0, 100_000)).length;
      const again = await terminateService(ctx, P, 's5', { request: 'r1' }, { kind: 'geni', terminatedBy: byR1 });
      assert.deepEqual(again, t, 'returned as it is');
      assert.equal((await ctx.store.listEvents(0, 100_000)).length, eventsBefore, 'nothing written');
      await refused('invalid_transition', terminateService(ctx, P, 's5', { request: 'r2' }, { kind: 'geni', terminatedBy: (x) => x.attributes.request === 'r2' }));
    });

    it('waitForService gives up after its timeout and on abort', async () => {
      await instantiateService(ctx, P, { id: 's4', name: 'svc', kind: 'mano', lrps: [lrp('s4-a', 1)] });
      assert.equal(await waitForService(ctx, 's4', (x) => x.state === 'READY', 100), undefined);
      const abort = new AbortController();
      const waiting = waitForService(ctx, 's4', (x) => x.state === 'READY', 10_000, abort.signal);
      abort.abort();
      assert.equal(await waiting, undefined);
    });
  });
}
