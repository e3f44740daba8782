// The HTTP variant of the lock interface: the same core and ErrorResponse as over MQTT.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningDrover } from '../src/drover.js';
import { LOCK_HTTP_BASE } from '../src/api/http/locks.js';
import { lock, LockClient, startLockDrover, unique, writeAuthFile } from './locks-fixtures.js';

async function call(drover: RunningDrover, method: 'POST' | 'DELETE', path: string, body?: unknown, authorization?: string) {
  const res = await fetch(`${drover.url}${LOCK_HTTP_BASE}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

describe('locks over HTTP', () => {
  let drover: RunningDrover;
  const prefix = unique('drover-test/arrowhead');

  before(async () => {
    drover = await startLockDrover({ mqtt: 'embedded', mqttTopicPrefix: prefix });
  });
  after(() => drover?.close());

  it('creates, queries and removes, sharing the locks with the MQTT interface', async () => {
    const created = await call(drover, 'POST', '/create', { locks: [lock('Http|a|1.0.0'), lock('Http|b|1.0.0'), lock('Http|c|1.0.0', 'Other')] });
    assert.equal(created.status, 201);
    assert.equal(created.body.count, 3);
    assert.equal(created.body.entries[0].orchestrationJobId, null);

    const refused = await call(drover, 'POST', '/create', { locks: [lock('Http|d|1.0.0'), lock('Http|a|1.0.0')] });
    assert.equal(refused.status, 400);
    assert.deepEqual(refused.body, {
      errorMessage: 'Already locked: Http|a|1.0.0',
      errorCode: 400,
      exceptionType: 'INVALID_PARAMETER',
      origin: `POST ${LOCK_HTTP_BASE}/create`,
    });

    const page = await call(drover, 'POST', '/query', { owners: ['TemperatureManager'], pagination: { page: 0, size: 1, direction: 'ASC', sortField: 'serviceInstanceId' } });
    assert.equal(page.status, 200);
    assert.equal(page.body.count, 2);
    assert.deepEqual(page.body.entries.map((e: { serviceInstanceId: string }) => e.serviceInstanceId), ['Http|a|1.0.0']);
    assert.equal((await call(drover, 'POST', '/query')).body.count, 3, 'no body lists everything');

    const removed = await call(drover, 'DELETE', `/remove/TemperatureManager?instanceIds=${encodeURIComponent('Http|a|1.0.0')}&instanceIds=${encodeURIComponent('Http|c|1.0.0')}`);
    assert.equal(removed.status, 200);
    assert.equal(removed.body, undefined);

    const client = await LockClient.connect(drover.mqtt!.brokerUrl, prefix);
    try {
      const viaMqtt = await client.request('query', { payload: { pagination: { page: 0, size: 10, direction: 'ASC', sortField: 'serviceInstanceId' } } });
      assert.deepEqual(viaMqtt.payload.entries.map((e: { serviceInstanceId: string }) => e.serviceInstanceId), ['Http|b|1.0.0', 'Http|c|1.0.0']);
    } finally {
      await client.close();
    }
  });

  it('answers bad requests with an ErrorResponse naming the method and path', async () => {
    const malformed = await call(drover, 'POST', '/create', '{"locks": [');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.exceptionType, 'INVALID_PARAMETER');
    assert.match(malformed.body.errorMessage, /^Could not parse payload/);
    const noIds = await call(drover, 'DELETE', '/remove/TemperatureManager');
    assert.equal(noIds.status, 400);
    assert.equal(noIds.body.errorMessage, 'Service instance id list empty.');
    assert.equal(noIds.body.origin, `DELETE ${LOCK_HTTP_BASE}/remove/{owner}`);
  });
});

describe('locks over HTTP with an --auth file', () => {
  let drover: RunningDrover;
  before(async () => {
    drover = await startLockDrover({ mqtt: 'none', auth: writeAuthFile() });
  });
  after(() => drover?.close());

  it('401 unidentified, 403 not allowed, 201 for an owner by declaration or bearer token', async () => {
    const create = (authorization: string | undefined, id: string) => call(drover, 'POST', '/create', { locks: [lock(id)] }, authorization);
    const anonymous = await create(undefined, 'Auth|a|1.0.0');
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.exceptionType, 'AUTH');
    assert.equal((await create('Bearer SYSTEM//Stranger', 'Auth|a|1.0.0')).status, 401);
    const viewer = await create('Bearer SYSTEM//Viewer', 'Auth|a|1.0.0');
    assert.equal(viewer.status, 403);
    assert.equal(viewer.body.exceptionType, 'FORBIDDEN');
    assert.equal((await create('Bearer SYSTEM//TemperatureManager', 'Auth|a|1.0.0')).status, 201);
    assert.equal((await create('Bearer tm-secret', 'Auth|b|1.0.0')).status, 201);
    assert.equal((await create('Bearer IDENTITY-TOKEN//tm-secret', 'Auth|c|1.0.0')).status, 201);
    assert.equal((await call(drover, 'POST', '/query', {}, 'Bearer SYSTEM//Viewer')).body.count, 3);
  });
});
