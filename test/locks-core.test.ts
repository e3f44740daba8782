// The lock use cases and their store, on SQLite and on PostgreSQL, with a clock the test moves.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { createLocks, lockHeldByOther, queryLocks, removeLocks } from '../src/core/locks.js';
import { DroverError, type ErrorKind } from '../src/model/errors.js';
import { formatUtc, lockListDto, serviceInstanceIdOf, type Lock } from '../src/model/lock.js';
import { OPEN_MODE_PRINCIPAL, type Principal } from '../src/model/principal.js';
import type { Store } from '../src/store/store.js';
import { storeFixtures } from './helpers.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const HOUR = 3_600_000;
const ops = OPEN_MODE_PRINCIPAL;
const tm: Principal = { name: 'TemperatureManager', roles: ['owner'] };
const at = (hours: number) => formatUtc(T0 + hours * HOUR);
const lock = (serviceInstanceId: string, owner = 'TemperatureManager', hours = 1) => ({ serviceInstanceId, owner, expiresAt: at(hours) });
const ids = (locks: Lock[]) => locks.map((l) => l.serviceInstanceId);

function refused(kind: ErrorKind, message: string | RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof DroverError, String(e));
    assert.equal(e.kind, kind);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  };
}

for (const fixture of storeFixtures()) {
  describe(`locks on ${fixture.name}`, () => {
    let store: Store;
    let now = T0;
    let ctx: CoreContext;
    const everything = async () => (await queryLocks(ctx, ops, {})).entries;

    before(async () => {
      store = await fixture.open();
      ctx = { store, bus: new EventBus(), log: pino({ level: 'silent' }), now: () => now };
    });
    after(async () => {
      await store.close();
      await fixture.cleanup();
    });

    it('creates management locks: ids, no job, not temporary, count', async () => {
      const created = await createLocks(ctx, tm, { locks: [lock('TemperatureProvider2|kelvinInfo|1.0.0'), lock('Drover|web-app_1|1.0.0', 'TemperatureManager', 2)] });
      assert.equal(created.count, 2);
      assert.deepEqual(ids(created.entries), ['TemperatureProvider2|kelvinInfo|1.0.0', 'Drover|web-app_1|1.0.0']);
      for (const l of created.entries) {
        assert.ok(Number.isInteger(l.id) && l.id > 0);
        assert.equal(l.orchestrationJobId, null);
        assert.equal(l.temporary, false);
        assert.equal(l.owner, 'TemperatureManager');
      }
      assert.equal(created.entries[1].expiresAt, T0 + 2 * HOUR);
      assert.deepEqual(lockListDto(created).entries.map((l) => l.expiresAt), [at(1), at(2)]);
    });

    it('refuses to lock a locked instance and creates nothing of the request', async () => {
      await assert.rejects(
        createLocks(ctx, ops, { locks: [lock('Free|svc|1.0.0', 'Other'), lock('TemperatureProvider2|kelvinInfo|1.0.0', 'Other')] }),
        refused('invalid_request', 'Already locked: TemperatureProvider2|kelvinInfo|1.0.0'),
      );
      assert.equal((await queryLocks(ctx, ops, { serviceInstanceIds: ['Free|svc|1.0.0'] })).count, 0);
      assert.equal((await everything()).length, 2);
    });

    it('lets exactly one of two racing creators win', async () => {
      const race = await Promise.allSettled([1, 2].map((n) => createLocks(ctx, ops, { locks: [lock('Raced|svc|1.0.0', `Racer${n}`)] })));
      assert.equal(race.filter((r) => r.status === 'fulfilled').length, 1);
      const loser = race.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      refused('invalid_request', 'Already locked: Raced|svc|1.0.0')(loser.reason);
      await removeLocks(ctx, ops, (await queryLocks(ctx, ops, { serviceInstanceIds: ['Raced|svc|1.0.0'] })).entries[0].owner, ['Raced|svc|1.0.0']);
    });

    it('creates locks in a transaction of their own: all or nothing, and apart from a transaction left open meanwhile', async () => {
      const newLock = (serviceInstanceId: string) => ({ orchestrationJobId: null, serviceInstanceId, owner: 'Own', expiresAt: T0 + HOUR, temporary: false });
      const held = newLock('TemperatureProvider2|kelvinInfo|1.0.0');
      // the held instance last, after more than one statement's worth of rows
      const batch = [...Array.from({ length: 1500 }, (_, i) => newLock(`Own|svc${i}|1.0.0`)), held];
      await assert.rejects(store.insertLocks(batch), refused('exists', /already locked/));
      assert.equal((await queryLocks(ctx, ops, { owners: ['Own'] })).count, 0);

      // A transaction waits between its statements; a lock created meanwhile is committed
      // by itself and stays when that transaction rolls back.
      let resume!: () => void;
      const paused = new Promise<void>((r) => (resume = r));
      let inserted!: () => void;
      const insertedFirst = new Promise<void>((r) => (inserted = r));
      const rolledBack = store.transaction(async (tx) => {
        await tx.insertLocks([newLock('Own|rolledback|1.0.0')]);
        inserted();
        await paused;
        throw new Error('rolled back on purpose');
      });
      await insertedFirst;
      const alone = store.insertLocks([newLock('Own|alone|1.0.0')]);
      resume();
      await assert.rejects(rolledBack, /rolled back on purpose/);
      const [created] = await alone;
      assert.equal(created.serviceInstanceId, 'Own|alone|1.0.0');
      assert.deepEqual(await store.queryLocks({ owners: ['Own'] }, undefined, T0), { entries: [{ id: created.id, ...newLock('Own|alone|1.0.0') }], count: 1 });
      await removeLocks(ctx, ops, 'Own', ['Own|alone|1.0.0']);
    });

    it('queries with every filter, sort and page; count is all matches', async () => {
      await createLocks(ctx, ops, { locks: [lock('A|alpha|1.0.0', 'Alice', 3), lock('B|beta|1.0.0', 'Bob', 4), lock('C|gamma|1.0.0', 'Alice', 5)] });
      // an orchestration job's temporary lock, as the orchestrator would make it
      const jobId = randomUUID();
      await store.transaction((tx) => tx.insertLocks([{ orchestrationJobId: jobId, serviceInstanceId: 'J|job|1.0.0', owner: 'Orchestrator', expiresAt: T0 + 6 * HOUR, temporary: true }]));
      const all = await everything();
      assert.equal(all.length, 6);
      // default order: id descending
      assert.deepEqual(all.map((l) => l.id), [...all.map((l) => l.id)].sort((a, b) => b - a));

      const q = async (payload: object) => queryLocks(ctx, ops, payload);
      assert.deepEqual(ids((await q({ ids: [all[0].id, all[1].id] })).entries), ids(all.slice(0, 2)));
      const job = await q({ orchestrationJobIds: [jobId.toUpperCase()] });
      assert.equal(job.count, 1);
      assert.equal(job.entries[0].temporary, true);
      assert.equal(job.entries[0].orchestrationJobId, jobId);
      assert.deepEqual(ids((await q({ serviceInstanceIds: ['B|beta|1.0.0', 'Nope|x|1.0.0'] })).entries), ['B|beta|1.0.0']);
      assert.deepEqual(ids((await q({ owners: ['Alice'], pagination: { page: 0, size: 10, direction: 'ASC', sortField: 'id' } })).entries), ['A|alpha|1.0.0', 'C|gamma|1.0.0']);
      assert.deepEqual(ids((await q({ expiresAfter: at(3), expiresBefore: at(5) })).entries), ['B|beta|1.0.0']);
      // filters combine with AND
      assert.equal((await q({ owners: ['Alice'], serviceInstanceIds: ['B|beta|1.0.0'] })).count, 0);

      const byOwner = await q({ pagination: { page: 0, size: 10, direction: 'asc', sortField: 'owner' } });
      assert.deepEqual(byOwner.entries.map((l) => l.owner), ['Alice', 'Alice', 'Bob', 'Orchestrator', 'TemperatureManager', 'TemperatureManager']);
      const byExpiry = await q({ pagination: { page: 0, size: 10, direction: 'DESC', sortField: 'expiresAt' } });
      assert.deepEqual(byExpiry.entries.map((l) => l.expiresAt), [...byExpiry.entries.map((l) => l.expiresAt)].sort((a, b) => b - a));
      const byInstance = await q({ pagination: { page: 0, size: 10, direction: 'ASC', sortField: 'serviceInstanceId' } });
      assert.deepEqual(ids(byInstance.entries), [...ids(byInstance.entries)].sort());

      const pages = [];
      for (let page = 0; page < 3; page++) {
        const r = await q({ pagination: { page, size: 4, direction: 'ASC', sortField: 'serviceInstanceId' } });
        assert.equal(r.count, 6);
        pages.push(...ids(r.entries));
      }
      assert.deepEqual(pages, ids(byInstance.entries));
    });

    it('refuses bad query input', async () => {
      const q = (payload: unknown) => queryLocks(ctx, ops, payload);
      await assert.rejects(q({ orchestrationJobIds: ['abc123'] }), refused('invalid_request', 'Invalid orchestration job id: abc123'));
      await assert.rejects(q({ ids: [1, null] }), refused('invalid_request', 'ID list contains empty element.'));
      await assert.rejects(q({ owners: [''] }), refused('invalid_request', 'Owner list contains empty element.'));
      await assert.rejects(q({ expiresBefore: 'tomorrow' }), refused('invalid_request', 'Invalid expires before: tomorrow'));
      await assert.rejects(q({ pagination: { page: 0, size: 10, sortField: 'color' } }), refused('invalid_request', /^Sort field is invalid/));
      await assert.rejects(q({ pagination: { page: 0, size: 10, direction: 'UP' } }), refused('invalid_request', 'Direction is invalid. Only ASC or DESC are allowed'));
      await assert.rejects(q({ pagination: { size: 10 } }), refused('invalid_request', 'If size parameter is defined then page parameter cannot be undefined'));
      await assert.rejects(q({ pagination: { page: 0, size: 1001 } }), refused('invalid_request', 'The page size cannot be larger than 1000'));
      await assert.rejects(q('not an object'), refused('invalid_request', /^Could not parse payload/));
    });

    it('refuses bad create input and changes nothing', async () => {
      const before = await everything();
      const c = (payload: unknown) => createLocks(ctx, ops, payload);
      const cases: [unknown, string | RegExp][] = [
        [undefined, 'Request payload is null'],
        [{ locks: [null] }, 'Request payload contains null element'],
        [{ locks: [lock('Ok|svc|1.0.0'), { serviceInstanceId: 'X|y|1.0.0', expiresAt: at(1) }] }, 'Owner is missing'],
        [{ locks: [{ owner: 'X', expiresAt: at(1) }] }, 'Service instance id is missing'],
        [{ locks: [lock('no-pipes')] }, 'The specified service instance identifier does not match the naming convention: no-pipes'],
        [{ locks: [lock('X|y|v1')] }, /does not match the naming convention: X\|y\|v1$/],
        [{ locks: [lock('X|y|1.0.0', 'bad name')] }, 'The specified system name does not match the naming convention: bad name'],
        [{ locks: [{ serviceInstanceId: 'X|y|1.0.0', owner: 'X' }] }, 'Expiration time is missing'],
        [{ locks: [{ serviceInstanceId: 'X|y|1.0.0', owner: 'X', expiresAt: '2030-02-30T00:00:00Z' }] }, 'Invalid expires at format: 2030-02-30T00:00:00Z'],
        [{ locks: [{ serviceInstanceId: 'X|y|1.0.0', owner: 'X', expiresAt: at(-1) }] }, `Expires at is in the past: ${at(-1)}`],
        [{ locks: [lock('X|y|1.0.0'), lock('X|y|1.0.0')] }, 'Duplicate service instance id: X|y|1.0.0'],
        [{ locks: 'all' }, /^Could not parse payload/],
      ];
      for (const [payload, message] of cases) await assert.rejects(c(payload), refused('invalid_request', message));
      assert.deepEqual(await everything(), before);
    });

    it('removes only the given owner’s management locks', async () => {
      await removeLocks(ctx, ops, 'Alice', ['A|alpha|1.0.0', 'B|beta|1.0.0', 'J|job|1.0.0']);
      const left = ids(await everything());
      assert.ok(!left.includes('A|alpha|1.0.0'));
      assert.ok(left.includes('B|beta|1.0.0'), 'Bob’s lock stays');
      assert.ok(left.includes('C|gamma|1.0.0'), 'not asked for');
      // a job's lock is not removed through management, even by its owner name
      await removeLocks(ctx, ops, 'Orchestrator', ['J|job|1.0.0']);
      assert.ok(ids(await everything()).includes('J|job|1.0.0'));
      await assert.rejects(removeLocks(ctx, ops, '', ['B|beta|1.0.0']), refused('invalid_request', 'Owner is missing'));
      await assert.rejects(removeLocks(ctx, ops, 'Bob', []), refused('invalid_request', 'Service instance id list empty.'));
      await assert.rejects(removeLocks(ctx, ops, 'Bob', ['B|beta|1.0.0', '']), refused('invalid_request', 'Service instance id list contains empty element.'));
      assert.ok(ids(await everything()).includes('B|beta|1.0.0'));
    });

    it('tells other interfaces who holds a lock', async () => {
      const held = await lockHeldByOther(store, 'B|beta|1.0.0', 'TemperatureManager', now);
      assert.equal(held?.owner, 'Bob');
      assert.equal(await lockHeldByOther(store, 'B|beta|1.0.0', 'Bob', now), undefined);
      assert.equal(await lockHeldByOther(store, 'Unlocked|svc|1.0.0', 'Bob', now), undefined);
      // a DesiredLRP is locked under its Drover name
      const lrp = serviceInstanceIdOf({ domain: 'cf-apps', processGuid: 'web-1' });
      assert.equal(lrp, 'cf-apps|web-1|1.0.0');
      await createLocks(ctx, tm, { locks: [lock(lrp, 'TemperatureManager', 7)] });
      assert.equal((await lockHeldByOther(store, lrp, 'ops', now))?.owner, 'TemperatureManager');
    });

    it('forgets expired locks: they stop counting at expiresAt, then are purged', async () => {
      const countBefore = (await queryLocks(ctx, ops, {})).count;
      now = T0 + 4 * HOUR; // B (4 h) expires exactly now, C (5 h) and the job lock (6 h) live on
      assert.equal(await lockHeldByOther(store, 'B|beta|1.0.0', 'TemperatureManager', now), undefined);
      const after = await queryLocks(ctx, ops, {});
      assert.ok(after.count < countBefore);
      assert.ok(!ids(after.entries).includes('B|beta|1.0.0'));
      assert.equal((await store.queryLocks({ serviceInstanceIds: ['B|beta|1.0.0'] }, undefined, 0)).count, 0, 'the row is gone');
      // and the instance can be locked again
      const again = await createLocks(ctx, ops, { locks: [lock('B|beta|1.0.0', 'Carol', 8)] });
      assert.equal(again.entries[0].owner, 'Carol');
    });

    it('locks an instance whose expired lock is still stored, beside a free one; a live lock still refuses the whole request', async () => {
      await createLocks(ctx, ops, { locks: [lock('Stale|svc|1.0.0', 'Dave', 4.5)] });
      now = T0 + 4.5 * HOUR; // expired, and nothing has purged it yet
      assert.equal((await store.queryLocks({ serviceInstanceIds: ['Stale|svc|1.0.0'] }, undefined, 0)).count, 1, 'the expired row is still there');
      await assert.rejects(
        createLocks(ctx, ops, { locks: [lock('Stale|svc|1.0.0', 'Erin', 9), lock('C|gamma|1.0.0', 'Erin', 9)] }),
        refused('invalid_request', 'Already locked: C|gamma|1.0.0'),
      );
      const created = await createLocks(ctx, ops, { locks: [lock('Fresh|svc|1.0.0', 'Erin', 9), lock('Stale|svc|1.0.0', 'Erin', 9)] });
      assert.deepEqual(ids(created.entries), ['Fresh|svc|1.0.0', 'Stale|svc|1.0.0']);
      assert.deepEqual(
        (await queryLocks(ctx, ops, { serviceInstanceIds: ['Stale|svc|1.0.0', 'Fresh|svc|1.0.0'] })).entries.map((l) => [l.serviceInstanceId, l.owner]).sort(),
        [
          ['Fresh|svc|1.0.0', 'Erin'],
          ['Stale|svc|1.0.0', 'Erin'],
        ],
      );
    });

    it('checks the caller: identified, allowed to manage locks, and the owner (unless operator)', async () => {
      const reader: Principal = { name: 'Viewer', roles: ['reader'] };
      await assert.rejects(createLocks(ctx, undefined, { locks: [lock('P|q|1.0.0', 'TemperatureManager', 9)] }), refused('unauthenticated', /not identified/));
      await assert.rejects(createLocks(ctx, reader, { locks: [lock('P|q|1.0.0', 'Viewer', 9)] }), refused('forbidden', /lacks the owner role/));
      await assert.rejects(createLocks(ctx, tm, { locks: [lock('P|q|1.0.0', 'Carol', 9)] }), refused('forbidden', 'TemperatureManager may not manage locks of Carol'));
      await assert.rejects(removeLocks(ctx, tm, 'Carol', ['B|beta|1.0.0']), refused('forbidden', 'TemperatureManager may not manage locks of Carol'));
      assert.ok((await queryLocks(ctx, reader, {})).count > 0, 'readers may query');
    });

    it('creates and queries thousands of locks in one request', async () => {
      const many = Array.from({ length: 2500 }, (_, i) => lock(`Bulk|svc${i}|1.0.0`, 'Bulk', 10));
      const created = await createLocks(ctx, ops, { locks: many });
      assert.equal(created.count, 2500);
      assert.deepEqual(ids(created.entries), many.map((l) => l.serviceInstanceId));
      const page = await queryLocks(ctx, ops, { owners: ['Bulk'] });
      assert.equal(page.count, 2500);
      assert.equal(page.entries.length, 1000, 'the default page is the largest');
      await removeLocks(ctx, ops, 'Bulk', many.map((l) => l.serviceInstanceId));
      assert.equal((await queryLocks(ctx, ops, { owners: ['Bulk'] })).count, 0);
    });
  });
}
