// The MANO services watcher under leader fencing, on the real PostgreSQL: two store handles
// on one schema play two replicas. A deposed leader's watcher pass (its lease was taken over
// at a new epoch) must be refused by the store and write nothing; the new leader's pass settles.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { instantiateService, serviceStatus, settleServices, watchServices } from '../src/core/services.js';
import { CONVERGENCE_LEASE } from '../src/converge/leader.js';
import { DroverError } from '../src/model/errors.js';
import { OPEN_MODE_PRINCIPAL as P } from '../src/model/principal.js';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import { dropSchema, lrpInput, PG_URL, tempDir, uniqueSchema, waitFor } from './helpers.js';

const schema = uniqueSchema();
const dir = tempDir('drover-scaleout-services-');
const stores: Store[] = [];

after(async () => {
  for (const s of stores) await s.close();
  await dropSchema(schema);
  rmSync(dir, { recursive: true, force: true });
});

/** A replica's core context on its own store handle; `warnings` collects what it logs at warn. */
async function replica(): Promise<{ ctx: CoreContext; warnings: string[] }> {
  const store = await openStore(`${PG_URL}?schema=${schema}`, dir);
  stores.push(store);
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  return { ctx: { store, bus: new EventBus(), log, now: Date.now }, warnings };
}

/** A service whose one LRP wants no instances: the watcher's next pass moves it to READY. */
const readyAtOnce = (id: string) => ({ id, name: id, kind: 'mano', lrps: [lrpInput(`${id}-lrp`, 'mano', 0)] });

describe('services watcher fenced by the leader lease', () => {
  it('refuses a deposed leader’s watcher writes; the new leader’s watcher settles', async () => {
    const a = await replica();
    const b = await replica();
    const state = async (id: string) => (await serviceStatus(b.ctx, P, id)).service.state;

    const leaseA = await a.ctx.store.acquireLease(CONVERGENCE_LEASE, 'A', 60_000);
    assert.equal(leaseA?.epoch, 1);
    const fenceA = { name: CONVERGENCE_LEASE, holder: 'A', epoch: 1 };
    // while A holds its lease, its fenced pass writes
    await instantiateService(b.ctx, P, readyAtOnce('s-before'));
    await settleServices(a.ctx, fenceA);
    assert.equal(await state('s-before'), 'READY');

    // A's lease runs out (as when A stalls past it; released here so that no timing matters)
    await a.ctx.store.releaseLease(CONVERGENCE_LEASE, 'A');
    const leaseB = await b.ctx.store.acquireLease(CONVERGENCE_LEASE, 'B', 10_000);
    assert.equal(leaseB?.epoch, 2);
    const fenceB = { name: CONVERGENCE_LEASE, holder: 'B', epoch: 2 };

    await instantiateService(b.ctx, P, readyAtOnce('s-after'));
    const eventsBefore = await b.ctx.store.lastEventId();
    // the old leader's pass: refused, nothing stored
    await assert.rejects(settleServices(a.ctx, fenceA), (e) => e instanceof DroverError && e.kind === 'conflict');
    // the right holder at an old epoch is refused too
    await assert.rejects(settleServices(b.ctx, { ...fenceB, epoch: 1 }), (e) => e instanceof DroverError && e.kind === 'conflict');
    assert.equal(await state('s-after'), 'INSTANTIATING');
    assert.equal(await b.ctx.store.lastEventId(), eventsBefore, 'no event of a refused pass');

    // the running watcher of the old leader (still thinking it leads) keeps being refused
    const stopA = watchServices(a.ctx, 50, () => fenceA);
    await sleep(300);
    await stopA();
    assert.equal(await state('s-after'), 'INSTANTIATING');
    assert.ok(
      a.warnings.some((l) => l.includes('service watcher pass refused: no longer the leader')),
      `the refusal is logged as such:\n${a.warnings.join('')}`,
    );

    // the new leader's watcher settles it
    const stopB = watchServices(b.ctx, 50, () => fenceB);
    try {
      await waitFor(async () => ((await state('s-after')) === 'READY' ? true : undefined), 's-after READY', 5000, 50);
    } finally {
      await stopB();
    }
    assert.deepEqual(b.warnings, []);
  });
});
