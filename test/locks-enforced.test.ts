// Locks are real: while another owner holds a lock on a desired LRP, BBS changes to it are
// refused naming the owner; they go through again after the lock is removed or expires, and
// an operator may force them.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningDrover } from '../src/drover.js';
import { LOCK_HTTP_BASE } from '../src/api/http/locks.js';
import { lock, startLockDrover, writeAuthFile } from './locks-fixtures.js';

const OWNER = 'Bearer tm-secret'; // TemperatureManager, role owner
const OTHER = 'Bearer other-secret'; // AnotherOwner, role owner
const OPS = 'Bearer ops-secret';

async function post(drover: RunningDrover, path: string, body: unknown, authorization: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${drover.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: JSON.parse((await res.text()) || '{}') };
}

const instances = async (drover: RunningDrover) =>
  (await post(drover, '/v1/desired_lrps/get_by_process_guid.r2', { process_guid: 'locked-app' }, OPS)).body.desired_lrp.instances;

describe('locks enforced on the BBS interface', () => {
  let drover: RunningDrover;
  before(async () => {
    const auth = writeAuthFile();
    const { appendFileSync } = await import('node:fs');
    appendFileSync(auth, '  - name: AnotherOwner\n    roles: [owner]\n    tokens: [other-secret]\n');
    drover = await startLockDrover({ auth, mqtt: 'none' });
    const desire = { desired_lrp: { process_guid: 'locked-app', domain: 'apps', instances: 1, action: { run: { path: '/bin/true' } } } };
    assert.deepEqual((await post(drover, '/v1/desired_lrp/desire.r1', desire, OTHER)).body, {});
  });
  after(() => drover?.close());

  it('refuses another owner, then allows after remove; the holder itself may change it', async () => {
    const created = await post(drover, `${LOCK_HTTP_BASE}/create`, { locks: [lock('apps|locked-app|1.0.0', 'TemperatureManager')] }, OWNER);
    assert.equal(created.status, 201);

    const refused = await post(drover, '/v1/desired_lrp/update', { process_guid: 'locked-app', update: { instances: 3 } }, OTHER);
    assert.equal(refused.body.error.type, 'ResourceConflict');
    assert.match(refused.body.error.message, /locked by TemperatureManager/);
    assert.equal(await instances(drover), 1, 'nothing changed');
    for (const [path, body] of [
      ['/v1/desired_lrp/remove', { process_guid: 'locked-app' }],
      ['/v1/actual_lrps/retire', { actual_lrp_key: { process_guid: 'locked-app', index: 0, domain: 'apps' } }],
    ] as const) {
      assert.equal((await post(drover, path, body, OTHER)).body.error?.type, 'ResourceConflict', path);
    }

    // the lock holder is not refused
    assert.deepEqual((await post(drover, '/v1/desired_lrp/update', { process_guid: 'locked-app', update: { instances: 2 } }, OWNER)).body, {});
    assert.equal(await instances(drover), 2);

    const removed = await fetch(`${drover.url}${LOCK_HTTP_BASE}/remove/TemperatureManager?instanceIds=${encodeURIComponent('apps|locked-app|1.0.0')}`, {
      method: 'DELETE',
      headers: { authorization: OWNER },
    });
    assert.equal(removed.status, 200);
    assert.deepEqual((await post(drover, '/v1/desired_lrp/update', { process_guid: 'locked-app', update: { instances: 3 } }, OTHER)).body, {});
    assert.equal(await instances(drover), 3);
  });

  it('allows the change once the lock expired', async () => {
    const soon = new Date(Date.now() + 1500).toISOString();
    const created = await post(drover, `${LOCK_HTTP_BASE}/create`, { locks: [lock('apps|locked-app|1.0.0', 'TemperatureManager', soon)] }, OWNER);
    assert.equal(created.status, 201);
    assert.equal((await post(drover, '/v1/desired_lrp/update', { process_guid: 'locked-app', update: { instances: 4 } }, OTHER)).body.error?.type, 'ResourceConflict');
    await new Promise((r) => setTimeout(r, 1700));
    assert.deepEqual((await post(drover, '/v1/desired_lrp/update', { process_guid: 'locked-app', update: { instances: 4 } }, OTHER)).body, {});
    assert.equal(await instances(drover), 4);
  });

  it('lets an operator force the change, but only with the explicit flag', async () => {
    await post(drover, `${LOCK_HTTP_BASE}/create`, { locks: [lock('apps|locked-app|1.0.0', 'TemperatureManager')] }, OWNER);
    const update = { process_guid: 'locked-app', update: { instances: 5 } };
    assert.equal((await post(drover, '/v1/desired_lrp/update', update, OPS)).body.error?.type, 'ResourceConflict');
    assert.deepEqual((await post(drover, '/v1/desired_lrp/update', update, OPS, { 'x-drover-force': 'true' })).body, {});
    assert.equal(await instances(drover), 5);
    // the flag means nothing coming from a non-operator
    assert.equal((await post(drover, '/v1/desired_lrp/update', { process_guid: 'locked-app', update: { instances: 6 } }, OTHER, { 'x-drover-force': 'true' })).body.error?.type, 'ResourceConflict');
  });
});
