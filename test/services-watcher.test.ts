// The service watcher settles services after the commits that may move one. Its interval is
// an hour here, so every state change below comes from a commit the watcher did not skip.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { desireLrp } from '../src/core/desired-lrps.js';
import { claimActualLrp, removeActualLrp, startActualLrp } from '../src/core/instance-lifecycle.js';
import { instantiateService, terminateService, waitForService, watchServices } from '../src/core/services.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import type { DesiredLrp } from '../src/model/lrp.js';
import type { Service, ServiceState } from '../src/model/service.js';
import { lrpInput, storeFixtures } from './helpers.js';

const P = OPEN_MODE_PRINCIPAL;
const CELL = { instanceGuid: 'ig', cellId: 'cell-1' };
const HOUR = 3_600_000;

const lrp = (guid: string, extra: Partial<DesiredLrp> = {}): Partial<DesiredLrp> => ({ ...lrpInput(guid, 'watch', 1), ...extra });

const [sqlite] = storeFixtures();

describe('service watcher, driven by commits alone', () => {
  let ctx: CoreContext;
  let stopWatching: () => Promise<void>;
  before(async () => {
    ctx = { store: await sqlite!.open(), bus: new EventBus(), log: pino({ level: 'silent' }), now: Date.now };
    stopWatching = watchServices(ctx, HOUR);
  });
  after(async () => {
    await stopWatching();
    await ctx.store.close();
    await sqlite!.cleanup();
  });

  const reaches = async (id: string, state: ServiceState): Promise<Service> => {
    const s = await waitForService(ctx, id, (x) => x.state === state, 5000);
    assert.equal(s?.state, state, `${id} should reach ${state}`);
    return s!;
  };
  const run = async (guid: string) => {
    await claimActualLrp(ctx, P, { processGuid: guid, index: 0 }, CELL);
    await startActualLrp(ctx, P, { processGuid: guid, index: 0 }, CELL, undefined);
  };

  it('moves a service when its instances run and when they are gone, with unrelated desires in between', async () => {
    await instantiateService(ctx, P, { id: 'w1', name: 'w', kind: 'test', lrps: [lrp('w1-a')] });
    await desireLrp(ctx, P, lrp('plain-1'));
    await run('w1-a');
    await reaches('w1', 'READY');
    await terminateService(ctx, P, 'w1');
    await desireLrp(ctx, P, lrp('plain-2'));
    await removeActualLrp(ctx, P, { processGuid: 'w1-a', index: 0 }, CELL);
    await reaches('w1', 'TERMINATED');
  });

  it('counts an LRP desired into a settling service', async () => {
    await instantiateService(ctx, P, { id: 'w2', name: 'w', kind: 'test', lrps: [lrp('w2-a')] });
    await new Promise((resolve) => setTimeout(resolve, 200)); // the pass after the instantiation is over
    // a disabled LRP joins w2 while it is INSTANTIATING: that commit alone must move w2 to ERROR
    await desireLrp(ctx, P, lrp('w2-b', { serviceId: 'w2', enabled: false }));
    await reaches('w2', 'ERROR');
  });
});
