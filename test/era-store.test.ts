// Era mservices on both stores (SQLite and PostgreSQL), through the core use cases without
// a server or processes: the content-addressed attachments (stored once, counted, dropped
// with their last user) and the crash-loop guard driven by crash reports, deterministically.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { claimActualLrp, crashActualLrp } from '../src/core/instance-lifecycle.js';
import { createMservice, deleteMservice, getMservice, patchMservice, uploadMserviceAttachment } from '../src/core/mservices.js';
import type { DroverError } from '../src/model/errors.js';
import { serviceInstanceIdOf } from '../src/model/lock.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import type { Store } from '../src/store/store.js';
import { serviceZip } from './era-fixtures.js';
import { storeFixtures } from './helpers.js';

const p = OPEN_MODE_PRINCIPAL;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

for (const fixture of storeFixtures()) {
  describe(`Era mservices on ${fixture.name}`, () => {
    let store: Store;
    let ctx: CoreContext;
    let clock = Date.parse('2024-05-01T00:00:00Z');
    before(async () => {
      store = await fixture.open();
      ctx = { store, bus: new EventBus(), log: pino({ level: 'silent' }), now: () => clock };
    });
    after(async () => {
      await store.close();
      await fixture.cleanup();
    });

    it('stores an attachment once for all its users and drops it with the last', async () => {
      const zip = serviceZip();
      const a = await createMservice(ctx, p, 'd', { name: 'a', cmdline: './bin/run.sh' });
      const b = await createMservice(ctx, p, 'd', { name: 'b', cmdline: './bin/run.sh' });
      await uploadMserviceAttachment(ctx, p, 'd', a.id, zip);
      await uploadMserviceAttachment(ctx, p, 'd', b.id, zip);
      await uploadMserviceAttachment(ctx, p, 'd', b.id, zip); // the same again: still one user
      const stored = await store.getAttachment(sha256(zip));
      assert.ok(stored?.equals(zip), 'the bytes come back as they went in');
      await deleteMservice(ctx, p, 'd', a.id);
      assert.ok(await store.getAttachment(sha256(zip)), 'b still uses it');
      const other = serviceZip('#!/bin/sh\nexec sleep 100\n');
      await uploadMserviceAttachment(ctx, p, 'd', b.id, other);
      assert.equal(await store.getAttachment(sha256(zip)), undefined, 'replaced by its last user');
      await deleteMservice(ctx, p, 'd', b.id);
      assert.equal(await store.getAttachment(sha256(other)), undefined);
    });

    it('refuses changes while someone else holds an Arrowhead lock on the mservice', async () => {
      const m = await createMservice(ctx, p, 'd', { name: 'locked', cmdline: './bin/run.sh' });
      await store.transaction((tx) =>
        tx.insertLocks([{ orchestrationJobId: null, serviceInstanceId: serviceInstanceIdOf({ domain: 'd', processGuid: m.id }), owner: 'someone-else', expiresAt: clock + 60_000, temporary: false }]),
      );
      await assert.rejects(patchMservice(ctx, p, 'd', m.id, { cmdparam: '-x' }), (e: DroverError) => e.kind === 'locked');
      await assert.rejects(deleteMservice(ctx, p, 'd', m.id), (e: DroverError) => e.kind === 'locked');
      await assert.rejects(uploadMserviceAttachment(ctx, p, 'd', m.id, serviceZip()), (e: DroverError) => e.kind === 'locked');
      assert.equal((await getMservice(ctx, p, 'd', m.id)).cmdparam, '');
      clock += 61_000; // expired
      await deleteMservice(ctx, p, 'd', m.id);
    });

    it('the crash-loop guard counts restarts in a sliding window and disables at the limit', async () => {
      const m = await createMservice(ctx, p, 'd', { name: 'loop', cmdline: './bin/run.sh' });
      await uploadMserviceAttachment(ctx, p, 'd', m.id, serviceZip());
      const key = { processGuid: m.id, index: 0, domain: 'd' };
      let n = 0;
      const crashOnce = async (reason = 'exited with code 1') => {
        const ik = { instanceGuid: `i${++n}`, cellId: 'cell-a' };
        await claimActualLrp(ctx, p, key, ik);
        await crashActualLrp(ctx, p, key, ik, reason);
      };
      // 5 crashes 3 s apart: never 5 restarts within 10 s, so it keeps restarting
      for (let i = 0; i < 5; i++) {
        await crashOnce();
        clock += 3000;
      }
      assert.equal((await getMservice(ctx, p, 'd', m.id)).enabled, true);
      const [a] = await store.listActualLrps({ processGuid: m.id });
      assert.equal(a!.state, 'UNCLAIMED', 'restarted at once, however many crashes (no BBS back-off)');
      assert.equal(a!.targetCellId, 'cell-a');
      // after a quiet 10 s, 5 restarts within a second; the 6th crash is one too many
      clock += 10_000;
      for (let i = 0; i < 6; i++) {
        assert.equal((await getMservice(ctx, p, 'd', m.id)).enabled, true, `still enabled before crash ${i + 1}`);
        clock += 100;
        await crashOnce('exited with code 7');
      }
      const off = await getMservice(ctx, p, 'd', m.id);
      assert.equal(off.enabled, false);
      assert.match(off.ext.disabled_reason as string, /^crash loop: instance 0 crashed again after 5 restarts within 10 s \(last: exited with code 7\)$/);
      assert.equal(off.ext.disabled_at, new Date(clock).toISOString());
      assert.deepEqual(await store.listActualLrps({ processGuid: m.id }), [], 'its instance is gone');
      // enabling again starts afresh: one crash does not disable it again
      await patchMservice(ctx, p, 'd', m.id, { enabled: true });
      clock += 100;
      await crashOnce();
      assert.equal((await getMservice(ctx, p, 'd', m.id)).enabled, true);
      await deleteMservice(ctx, p, 'd', m.id);
    });
  });
}
