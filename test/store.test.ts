import { after, before, describe, it } from 'node:test';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import assert from 'node:assert/strict';
import { newActualLrp, claim } from '../src/model/actual-lrp-machine.js';
import { validateDesiredLrp } from '../src/model/validate.js';
import type { ActualLrpRow, Store } from '../src/store/store.js';
import { unpackActualLrps } from '../src/store/packed-actual-lrps.js';
import { lrpInput, storeFixtures } from './helpers.js';
import { openStore } from '../src/store/open.js';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../src/store/schema.js';
import { DroverError } from '../src/model/errors.js';
import type { DesiredLrp } from '../src/model/lrp.js';

const desired = (guid: string, domain = 'd1') =>
  validateDesiredLrp(lrpInput(guid, domain, 2));

for (const fixture of storeFixtures()) {
  describe(`store on ${fixture.name}`, () => {
    let store: Store;
    before(async () => {
      store = await fixture.open();
    });
    after(async () => {
      await store.close();
      await fixture.cleanup();
    });

    it('migrates idempotently', async () => {
      await store.migrate();
      await store.migrate();
    });

    it('stores desired LRPs and filters by domain and guids', async () => {
      await store.transaction(async (tx) => {
        await tx.insertDesiredLrp(desired('a', 'd1'));
        await tx.insertDesiredLrp(desired('b', 'd2'));
        await tx.insertDesiredLrp(desired('c', 'd1'));
      });
      assert.deepEqual((await store.listDesiredLrps({ domain: 'd1' })).map((d) => d.processGuid), ['a', 'c']);
      assert.deepEqual((await store.listDesiredLrps({ processGuids: ['b', 'c'] })).map((d) => d.processGuid), ['b', 'c']);
      assert.equal((await store.getDesiredLrp('b'))?.domain, 'd2');
      assert.equal(await store.getDesiredLrp('zz'), undefined);
    });

    it('gives convergence the planning fields of desired LRPs, as the whole records have them', async () => {
      const plain = desired('plan-1');
      const odd: DesiredLrp = { ...desired('plan-2'), instances: 5, enabled: false, placementTags: ['gpu'], placement: { strategy: 'leader', sites: ['s1'], sections: ['x'] }, restart: { mode: 'on-failure', immediate: false, limit: { restarts: 3, windowMs: 60_000 } } };
      await store.transaction(async (tx) => {
        await tx.insertDesiredLrp(plain);
        await tx.insertDesiredLrp(odd);
      });
      const pick = ({ processGuid, domain, instances, enabled, placement, placementTags, restart }: DesiredLrp) =>
        JSON.parse(JSON.stringify({ processGuid, domain, instances, enabled, placement, placementTags, restart })) as unknown;
      const whole = await store.listDesiredLrps({ processGuids: ['plan-1', 'plan-2'] });
      assert.deepEqual(await store.listDesiredLrpPlanInfos({ processGuids: ['plan-1', 'plan-2'] }), whole.map(pick));
      assert.deepEqual(whole.map(pick), [plain, odd].map(pick));
      assert.ok((await store.listDesiredLrpPlanInfos()).some((d) => d.processGuid === 'plan-2'));
    });

    it('refuses a duplicate desired LRP as exists', async () => {
      await assert.rejects(
        store.transaction((tx) => tx.insertDesiredLrp(desired('a'))),
        (e: unknown) => e instanceof DroverError && e.kind === 'exists',
      );
    });

    it('rolls back the whole transaction on failure', async () => {
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.insertDesiredLrp(desired('rollback-me'));
          await tx.insertActualLrp(newActualLrp({ processGuid: 'rollback-me', index: 0, domain: 'd1' }, 1));
          throw new Error('boom');
        }),
      );
      assert.equal(await store.getDesiredLrp('rollback-me'), undefined);
      assert.equal(await store.getActualLrp('rollback-me', 0), undefined);
    });

    it('keeps concurrent transactions apart: a failing one leaves nothing, the others are stored', async () => {
      const outcomes = await Promise.allSettled(
        ['ok-1', 'fails', 'ok-2', 'dup', 'ok-3'].map((guid) =>
          store.transaction(async (tx) => {
            await tx.insertDesiredLrp(desired(guid === 'dup' ? 'ok-1' : guid));
            await tx.insertActualLrp(newActualLrp({ processGuid: guid, index: 0, domain: 'd1' }, 1));
            await tx.appendEvents([{ type: 'desired_lrp_created', payload: { guid }, at: 1 }]);
            if (guid === 'fails') throw new Error('boom');
            return guid;
          }),
        ),
      );
      const [ok1, fails, ok2, dup, ok3] = outcomes;
      assert.deepEqual([fails, ok2, ok3].map((o) => o!.status), ['rejected', 'fulfilled', 'fulfilled']);
      // ok-1 and dup insert the same desired LRP: the second to commit is refused (on PostgreSQL
      // each has a connection of its own, and either may take the write lock first)
      assert.equal([ok1, dup].filter((o) => o!.status === 'fulfilled').length, 1);
      const winner = ok1!.status === 'fulfilled' ? 'ok-1' : 'dup';
      const loser = winner === 'ok-1' ? dup! : ok1!;
      assert.ok(loser.status === 'rejected' && loser.reason instanceof DroverError && loser.reason.kind === 'exists');
      const stored = [winner, 'ok-2', 'ok-3'].sort();
      assert.deepEqual((await store.listDesiredLrps({ processGuids: ['ok-1', 'fails', 'ok-2', 'ok-3'] })).map((d) => d.processGuid), ['ok-1', 'ok-2', 'ok-3']);
      assert.deepEqual((await store.listActualLrps({ processGuids: ['ok-1', 'fails', 'ok-2', 'dup', 'ok-3'] })).map((a) => a.actualLrpKey.processGuid), stored);
      const guids = (await store.listEvents(0, 1000)).map((e) => (e.payload as { guid?: string }).guid).filter((g) => g);
      assert.deepEqual(guids.sort(), stored);
      // clean up for the tests below
      await store.transaction(async (tx) => {
        for (const guid of ['ok-1', 'ok-2', 'ok-3']) await tx.deleteDesiredLrp(guid);
        for (const guid of stored) await tx.deleteActualLrp(guid, 0);
      });
    });

    it('stores an event that carries the record the transaction wrote as it was written', async () => {
      const d = desired('event-record');
      const changed = { ...d, instances: 5 };
      const ids = await store.transaction(async (tx) => {
        await tx.insertDesiredLrp(d);
        const created = await tx.appendEvents([{ type: 'desired_lrp_created', payload: { desiredLrp: d, extra: { n: 1 }, none: undefined }, at: 7 }]);
        await tx.updateDesiredLrp(changed);
        const change = await tx.appendEvents([{ type: 'desired_lrp_changed', payload: { before: d, after: changed }, at: 8 }]);
        return [created, change];
      });
      const events = await store.listEvents(ids[0]! - 1, 2);
      assert.deepEqual(
        events.map((e) => e.payload),
        [JSON.parse(JSON.stringify({ desiredLrp: d, extra: { n: 1 } })), JSON.parse(JSON.stringify({ before: d, after: changed }))],
      );
      assert.deepEqual(await store.getDesiredLrp('event-record'), JSON.parse(JSON.stringify(changed)));
      await store.transaction((tx) => tx.deleteDesiredLrp('event-record'));
    });

    it('gives back an actual LRP change event whole, though its row holds only what changed', async () => {
      const a = newActualLrp({ processGuid: 'change-event', index: 0, domain: 'd1' }, 1_700_000_000_123);
      const claimed = claim(a, { instanceGuid: 'i-1', cellId: 'cell-1' }, 1_700_000_000_999);
      // a field that `after` drops cannot be a change: that payload is stored whole
      const dropped = { before: { x: 1, y: 'y' }, after: { x: 2 } };
      // `a` as its creation wrote it, in an earlier transaction: its changes reuse that JSON
      const first = await store.transaction(async (tx) => {
        await tx.insertActualLrp(a);
        return tx.appendEvents([{ type: 'actual_lrp_created', payload: { actualLrp: a }, at: 0 }]);
      });
      await store.transaction((tx) =>
        tx.appendEvents([
          { type: 'actual_lrp_changed', payload: { before: a, after: claimed }, at: 1 },
          { type: 'actual_lrp_changed', payload: dropped, at: 2 },
          { type: 'actual_lrp_changed', payload: { before: a, after: a }, at: 3 },
        ]),
      );
      const events = await store.listEvents(first - 1, 4);
      assert.deepEqual(
        events.map((e) => e.payload),
        [{ actualLrp: a }, { before: a, after: claimed }, dropped, { before: a, after: a }].map((p) => JSON.parse(JSON.stringify(p))),
      );
      await store.transaction((tx) => tx.deleteActualLrp('change-event', 0));
    });

    it('compare-and-sets actual LRPs on the modification tag and filters by cell', async () => {
      const a = newActualLrp({ processGuid: 'a', index: 0, domain: 'd1' }, 1_700_000_000_123);
      await store.transaction((tx) => tx.insertActualLrp(a));
      const claimed = claim(a, { instanceGuid: 'i-1', cellId: 'cell-1' }, 1_700_000_000_999);
      assert.equal(await store.transaction((tx) => tx.updateActualLrp(claimed, a)), true);
      // a writer that read index 0 is too late now
      assert.equal(await store.transaction((tx) => tx.updateActualLrp(claim(a, { instanceGuid: 'i-2', cellId: 'cell-2' }, 2), a)), false);
      const read = await store.getActualLrp('a', 0);
      assert.deepEqual(read, claimed);
      assert.equal((await store.listActualLrps({ cellId: 'cell-1' })).length, 1);
      assert.equal((await store.listActualLrps({ cellId: 'cell-2' })).length, 0);
      // an instance placed on cell-1, not claimed yet: BBS's cell filter is the instance key's cell
      const placed = { ...newActualLrp({ processGuid: 'a', index: 1, domain: 'd1' }, 1), targetCellId: 'cell-1' };
      await store.transaction((tx) => tx.insertActualLrp(placed));
      const onCell1 = async (includeTargeted?: boolean) => (await store.listActualLrps({ cellId: 'cell-1', includeTargeted })).map((x) => x.actualLrpKey.index);
      assert.deepEqual(await onCell1(), [0]);
      assert.deepEqual(await onCell1(true), [0, 1]);
      assert.deepEqual((await store.listActualLrpPlacements({ cellId: 'cell-1', includeTargeted: true })).map((x) => x.actualLrpKey.index), [0, 1]);
      await store.transaction((tx) => tx.deleteActualLrp('a', 1));
      assert.equal((await store.listActualLrps({ domain: 'd1', processGuid: 'a', index: 0 })).length, 1);
    });

    it('reads actual LRPs in pages: the same rows and order as the list, each page at most its size', async () => {
      await store.transaction(async (tx) => {
        for (const guid of ['p-b', 'p-a', 'p-c']) {
          for (let index = 0; index < 3; index++) {
            const cellId = guid === 'p-b' ? 'cell-p' : '';
            const a = { ...newActualLrp({ processGuid: guid, index, domain: guid === 'p-c' ? 'd-other' : 'd-pages' }, 1_700_000_000_000 + index), targetCellId: cellId };
            await tx.insertActualLrp(a);
          }
        }
      });
      const rowsOf = async (filter: Parameters<Store['pagesOfActualLrps']>[0], pageSize: number) => {
        const pages: string[][] = [];
        for await (const page of store.pagesOfActualLrps(filter, pageSize)) pages.push(unpackActualLrps(page).map((r) => `${r.process_guid}/${r.idx}`));
        return pages;
      };
      const listed = async (filter: Parameters<Store['listActualLrps']>[0]) => (await store.listActualLrps(filter)).map((a) => `${a.actualLrpKey.processGuid}/${a.actualLrpKey.index}`);
      // 6 rows: in pages of 2 (the last query finds none), in pages of 4 (the last one short)
      assert.deepEqual(await rowsOf({ domain: 'd-pages' }, 2), [['a/0', 'a/1'], ['a/2', 'b/0'], ['b/1', 'b/2']].map((p) => p.map((k) => `p-${k}`)));
      assert.deepEqual((await rowsOf({ domain: 'd-pages' }, 4)).flat(), await listed({ domain: 'd-pages' }));
      assert.deepEqual((await rowsOf({ cellId: 'cell-p', includeTargeted: true }, 2)).flat(), ['p-b/0', 'p-b/1', 'p-b/2']);
      assert.deepEqual(await rowsOf({ cellId: 'cell-p' }, 2), []); // placed there, claimed by none
      assert.deepEqual(await rowsOf({ processGuid: 'p-c', index: 1 }, 2), [['p-c/1']]);
      assert.deepEqual(await rowsOf({ processGuid: 'p-none' }, 2), []);
      assert.deepEqual((await rowsOf({}, 5)).flat(), await listed({}));
      // a row carries every stored column, net info as its JSON text
      let row: ActualLrpRow | undefined;
      for await (const page of store.pagesOfActualLrps({ processGuid: 'p-a', index: 2 })) row = unpackActualLrps(page)[0];
      const stored = (await store.getActualLrp('p-a', 2))!;
      assert.equal(Number(row!.since), stored.since);
      assert.deepEqual(JSON.parse(row!.net_info), stored.actualLrpNetInfo);
      assert.equal(row!.mod_epoch, stored.modificationTag.epoch);
      // inside a transaction the pages see its own writes
      const inTx = await store.transaction(async (tx) => {
        await tx.insertActualLrp(newActualLrp({ processGuid: 'p-tx', index: 0, domain: 'd-tx' }, 1));
        const keys: string[] = [];
        for await (const page of tx.pagesOfActualLrps({ domain: 'd-tx' }, 2)) keys.push(...unpackActualLrps(page).map((r) => r.process_guid));
        return keys;
      });
      assert.deepEqual(inTx, ['p-tx']);
    });

    it('persists events in order and resumes after an id', async () => {
      const first = await store.transaction((tx) => tx.appendEvents([{ type: 'desired_lrp_created', payload: { n: 1 }, at: 10 }]));
      const second = await store.transaction((tx) => tx.appendEvents([{ type: 'desired_lrp_removed', payload: { n: 2 }, at: 11 }]));
      assert.ok(second > first);
      const events = await store.listEvents(first - 1, 10);
      assert.deepEqual(events.map((e) => e.payload), [{ n: 1 }, { n: 2 }]);
      assert.equal(await store.lastEventId(), second);
      // 300 in one call: inserts of 256, 32, 8 and 4 rows, in order; the last one's id comes back
      const many = Array.from({ length: 300 }, (_, n) => ({ type: 'actual_lrp_created' as const, payload: { n }, at: n }));
      const last = await store.transaction((tx) => tx.appendEvents(many));
      const stored = await store.listEvents(second, 1000);
      assert.deepEqual(
        stored.map((e) => [e.payload, e.at]),
        many.map((e) => [e.payload, e.at]),
      );
      assert.equal(stored.at(-1)?.id, last);
      assert.equal(await store.lastEventId(), last);
    });

    it('deletes the oldest events written before a time, at most a batch of them', async () => {
      const earlier = (await store.listEvents(0, 100_000)).length;
      const at = [100, 101, 102, 105, 103, 106, 107];
      const last = await store.transaction((tx) => tx.appendEvents(at.map((t, n) => ({ type: 'actual_lrp_created' as const, payload: { n }, at: t }))));
      const remaining = async () => (await store.listEvents(0, 100)).map((e) => e.at);
      // a batch of exactly the earlier tests' events (the oldest), whenever they were written
      assert.equal(await store.transaction((tx) => tx.deleteEventsBefore(Number.MAX_SAFE_INTEGER, earlier)), earlier);
      assert.deepEqual(await remaining(), at);
      assert.equal(await store.transaction((tx) => tx.deleteEventsBefore(100, 1000)), 0);
      // before 104, in a batch of two: 102 is not in it
      assert.equal(await store.transaction((tx) => tx.deleteEventsBefore(104, 2)), 2);
      assert.deepEqual(await remaining(), [102, 105, 103, 106, 107]);
      // in a batch of three, 105 (a clock ahead) stays and 103 after it goes
      assert.equal(await store.transaction((tx) => tx.deleteEventsBefore(104, 3)), 2);
      assert.deepEqual(await remaining(), [105, 106, 107]);
      assert.equal(await store.oldestEventAt(), 105);
      assert.equal(await store.lastEventId(), last);
    });

    it('upserts cells and services', async () => {
      const cell = { cellId: 'c1', repAddress: '', zone: 'z', site: 's', sections: ['x'], placementTags: [], capacity: { memoryMb: 1, diskMb: 1, containers: 1 }, heartbeatAt: 5, ttlMs: 10 };
      await store.transaction((tx) => tx.upsertCell(cell));
      await store.transaction((tx) => tx.upsertCell({ ...cell, heartbeatAt: 9 }));
      assert.equal((await store.listCells()).length, 1);
      assert.equal((await store.getCell('c1'))?.heartbeatAt, 9);
      const service = { id: 's1', name: 'n', kind: 'mano', owner: 'o', state: 'READY' as const, shutdown: false, attributes: { k: 1 }, createdAt: 1, updatedAt: 2 };
      await store.transaction((tx) => tx.upsertService(service));
      await store.transaction((tx) => tx.upsertService({ ...service, shutdown: true }));
      assert.equal((await store.getService('s1'))?.shutdown, true);
      await store.transaction((tx) => tx.deleteService('s1'));
      assert.equal((await store.listServices()).length, 0);
    });
  });
}

describe('SQLite store internals', () => {
  const [fixture] = storeFixtures();
  after(() => fixture!.cleanup());

  it('checkpoints the WAL in the background while small transactions go on, and keeps every commit', async () => {
    const path = fixture!.spec.slice('sqlite:'.length);
    let store = await openStore(fixture!.spec, dirname(path));
    const payload = { data: 'x'.repeat(2000) };
    let largestWal = 0;
    // ~3 pages per commit: without checkpoints the WAL would pass 120 MB
    for (let i = 0; i < 12_000; i++) {
      await store.transaction((tx) => tx.appendEvents([{ type: 'desired_lrp_created', payload, at: i }]));
      if (i % 100 === 99) {
        largestWal = Math.max(largestWal, statSync(`${path}-wal`).size);
        await new Promise((r) => setTimeout(r, 5)); // the checkpointer's thread gets its turns, as between requests
      }
    }
    assert.ok(largestWal < 80_000_000, `the WAL grew to ${largestWal} bytes`);
    await store.close();
    store = await openStore(fixture!.spec, dirname(path));
    assert.equal((await store.listEvents(0, 20_000)).length, 12_000);
    await store.close();
  });

  it('keeps the events of a store made before migration 7, and numbers new ones after them', async () => {
    const dir = dirname(fixture!.spec.slice('sqlite:'.length));
    const path = `${dir}/before-7.db`;
    const old = new Database(path);
    old.exec('CREATE TABLE drover_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    for (const m of MIGRATIONS.filter((m) => m.version < 7)) {
      for (const statement of m.statements('sqlite')) old.exec(statement);
      old.prepare('INSERT INTO drover_migrations VALUES (?, 0)').run(m.version);
    }
    const append = old.prepare(`INSERT INTO events (type, at, payload) VALUES ('desired_lrp_created', ?, ?)`);
    for (let n = 1; n <= 3; n++) append.run(n, JSON.stringify({ n }));
    old.close();
    const store = await openStore(`sqlite:${path}`, dir);
    assert.deepEqual((await store.listEvents(0, 10)).map((e) => [e.id, e.payload]), [[1, { n: 1 }], [2, { n: 2 }], [3, { n: 3 }]]);
    assert.equal(await store.transaction((tx) => tx.appendEvents([{ type: 'desired_lrp_removed', payload: { n: 4 }, at: 4 }])), 4);
    await store.close();
    const after7 = new Database(path, { readonly: true });
    const table = after7.prepare(`SELECT sql FROM sqlite_master WHERE name = 'events'`).get() as { sql: string };
    assert.doesNotMatch(table.sql, /AUTOINCREMENT/);
    const sequenced = after7.prepare(`SELECT count(*) AS n FROM sqlite_sequence WHERE name = 'events'`).get() as { n: number };
    assert.equal(sequenced.n, 0, 'no sqlite_sequence row is written for events');
    after7.close();
  });

  it('answers queries whose text varies past the statement cache', async () => {
    const store = await openStore(fixture!.spec, dirname(fixture!.spec.slice('sqlite:'.length)));
    await store.transaction(async (tx) => {
      for (let i = 0; i < 300; i++) await tx.insertDesiredLrp(desired(`g${String(i).padStart(3, '0')}`));
    });
    // 300 distinct IN-list texts, then the first ones again after they were pushed out
    for (const n of [...Array.from({ length: 300 }, (_, i) => i + 1), 1, 2, 3]) {
      const guids = Array.from({ length: n }, (_, i) => `g${String(i).padStart(3, '0')}`);
      assert.deepEqual((await store.listDesiredLrps({ processGuids: guids })).map((d) => d.processGuid), guids);
    }
    await store.close();
  });
});
