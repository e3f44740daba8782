// The Arrowhead lock interface over MQTT, through real brokers — the embedded Aedes and the
// Mosquitto on 127.0.0.1:1883 — with an independent mqtt.js client speaking 3.1.1 and 3.1.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { IClientOptions } from 'mqtt';
import type { RunningDrover } from '../src/drover.js';
import { inHours, inMs, lock, LockClient, MOSQUITTO_URL, sleep, startLockDrover, unique, writeAuthFile, type Answer } from './locks-fixtures.js';

const BROKERS = [
  { name: 'the embedded Aedes', mqtt: 'embedded', url: (d: RunningDrover) => d.mqtt!.brokerUrl },
  { name: 'Mosquitto on 127.0.0.1:1883', mqtt: MOSQUITTO_URL, url: () => MOSQUITTO_URL },
];
const PROTOCOLS: { name: string; options: IClientOptions }[] = [
  { name: 'MQTT 3.1.1', options: { protocolVersion: 4 } },
  { name: 'MQTT 3.1', options: { protocolVersion: 3, protocolId: 'MQIsdp' } },
];

function assertError(a: Answer, client: LockClient, op: 'create' | 'query' | 'remove', status: number, exceptionType: string, message: string | RegExp) {
  assert.equal(a.status, status, JSON.stringify(a));
  assert.equal(a.payload.errorCode, status);
  assert.equal(a.payload.exceptionType, exceptionType);
  assert.equal(a.payload.origin, client.topic(op));
  if (typeof message === 'string') assert.equal(a.payload.errorMessage, message);
  else assert.match(a.payload.errorMessage, message);
}

const serviceIds = (a: Answer): string[] => a.payload.entries.map((e: { serviceInstanceId: string }) => e.serviceInstanceId);

for (const broker of BROKERS) {
  for (const protocol of PROTOCOLS) {
    describe(`locks over ${broker.name}, ${protocol.name} client`, () => {
      let drover: RunningDrover;
      let client: LockClient;
      // Every run has its own topics: the shared Mosquitto may be serving other Drovers.
      const prefix = unique('drover-test/arrowhead');
      const sid = (name: string) => `${name}|svc${prefix.slice(-6)}|1.0.0`;
      const as = (system: string) => ({ authentication: `SYSTEM//${system}` });
      const count = async (filter: object = {}) => (await client.request('query', { payload: filter })).payload.count as number;

      before(async () => {
        drover = await startLockDrover({ mqtt: broker.mqtt, mqttTopicPrefix: prefix });
        client = await LockClient.connect(broker.url(drover), prefix, protocol.options);
      });
      after(async () => {
        await client?.close();
        await drover?.close();
      });

      it('creates, refuses an already locked instance, queries with every filter and page, removes by owner', async () => {
        const [a, b, c, d] = ['Alpha', 'Beta', 'Gamma', 'Delta'].map(sid);
        const created = await client.request('create', { ...as('TemperatureManager'), traceId: 'create-1', payload: { locks: [lock(a), lock(b, 'TemperatureManager', inHours(2)), lock(c, 'Other', inHours(3))] } });
        assert.equal(created.status, 201);
        assert.equal(created.traceId, 'create-1');
        assert.equal(created.receiver, 'TemperatureManager');
        assert.equal(created.payload.count, 3);
        assert.deepEqual(serviceIds(created), [a, b, c]);
        const first = created.payload.entries[0];
        assert.deepEqual(Object.keys(first).sort(), ['expiresAt', 'id', 'orchestrationJobId', 'owner', 'serviceInstanceId', 'temporary']);
        assert.equal(first.orchestrationJobId, null);
        assert.equal(first.temporary, false);
        assert.match(first.expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

        const refused = await client.request('create', { payload: { locks: [lock(d), lock(a)] } });
        assertError(refused, client, 'create', 400, 'INVALID_PARAMETER', `Already locked: ${a}`);
        assert.equal(await count({ serviceInstanceIds: [d] }), 0, 'nothing of the refused request was created');

        const ids = created.payload.entries.map((e: { id: number }) => e.id);
        assert.equal(await count({ ids: [ids[0], ids[2]] }), 2);
        assert.equal(await count({ serviceInstanceIds: [b, c] }), 2);
        assert.equal(await count({ owners: ['Other'] }), 1);
        assert.equal(await count({ orchestrationJobIds: [randomUUID()] }), 0);
        assert.equal(await count({ serviceInstanceIds: [a, b, c], expiresAfter: inHours(1.5), expiresBefore: inHours(2.5) }), 1);
        const page = (n: number) => client.request('query', { payload: { serviceInstanceIds: [a, b, c], pagination: { page: n, size: 2, direction: 'DESC', sortField: 'expiresAt' } } });
        const [p0, p1] = [await page(0), await page(1)];
        assert.equal(p0.status, 200);
        assert.equal(p0.payload.count, 3, 'count is every match, not the page');
        assert.deepEqual([...serviceIds(p0), ...serviceIds(p1)], [c, b, a]);

        const removed = await client.request('remove', { ...as('TemperatureManager'), params: { owner: 'TemperatureManager' }, payload: [a, c] });
        assert.equal(removed.status, 200);
        assert.equal(removed.receiver, 'TemperatureManager');
        assert.ok(!('payload' in removed), 'remove answers without a payload');
        assert.deepEqual(serviceIds(await client.request('query', { payload: { serviceInstanceIds: [a, b, c], pagination: { page: 0, size: 10, direction: 'ASC', sortField: 'id' } } })), [b, c]);
      });

      it('answers with the requested QoS 0, 1 and 2', async () => {
        for (const qos of [0, 1, 2] as const) {
          const topic = client.newResponseTopic();
          const answer = await client.send('query', JSON.stringify({ traceId: `qos-${qos}`, responseTopic: topic, qosRequirement: qos, payload: {} }), topic, 5000, qos);
          assert.equal(answer.status, 200);
          assert.equal(answer.traceId, `qos-${qos}`);
          assert.equal(answer.qos, qos);
        }
      });

      it('answers bad requests with an ErrorResponse whose origin is the topic, and changes nothing', async () => {
        const before = await count();
        const bad = sid('Bad');
        assertError(await client.request('create', { payload: '{"locks": [' }), client, 'create', 400, 'INVALID_PARAMETER', /^Could not parse payload/);
        assertError(await client.request('create', { payload: { locks: [{ serviceInstanceId: bad, expiresAt: inHours(1) }] } }), client, 'create', 400, 'INVALID_PARAMETER', 'Owner is missing');
        assertError(await client.request('create', { payload: { locks: [lock('kelvinInfo')] } }), client, 'create', 400, 'INVALID_PARAMETER', /naming convention: kelvinInfo$/);
        const past = inHours(-1);
        assertError(await client.request('create', { payload: { locks: [lock(bad, 'TemperatureManager', past)] } }), client, 'create', 400, 'INVALID_PARAMETER', `Expires at is in the past: ${past}`);
        assertError(await client.request('create', { payload: { locks: [lock(bad, 'TemperatureManager', 'noon')] } }), client, 'create', 400, 'INVALID_PARAMETER', 'Invalid expires at format: noon');
        assertError(await client.request('query', { payload: { orchestrationJobIds: ['abc123'] } }), client, 'query', 400, 'INVALID_PARAMETER', 'Invalid orchestration job id: abc123');
        assertError(await client.request('remove', { payload: [bad] }), client, 'remove', 400, 'INVALID_PARAMETER', 'Owner is missing');
        assert.equal(await count(), before);
      });

      it('drops a request it cannot answer (no responseTopic, not JSON) without acting on it', async () => {
        const dropped = sid('Dropped');
        client.client.publish(client.topic('create'), JSON.stringify({ payload: { locks: [lock(dropped)] } }));
        client.client.publish(client.topic('create'), '{"responseTopic": ');
        await sleep(300);
        assert.equal(await count({ serviceInstanceIds: [dropped] }), 0);
      });

      it('stops counting a lock at its expiry, then lets the instance be locked again', async () => {
        const brief = sid('Brief');
        const created = await client.request('create', { payload: { locks: [lock(brief, 'TemperatureManager', inMs(1200))] } });
        assert.equal(created.status, 201);
        assert.equal(await count({ serviceInstanceIds: [brief] }), 1);
        await sleep(1400);
        assert.equal(await count({ serviceInstanceIds: [brief] }), 0);
        assert.equal((await client.request('create', { payload: { locks: [lock(brief, 'Other')] } })).status, 201);
      });
    });
  }
}

describe('locks over MQTT with an --auth file', () => {
  let drover: RunningDrover;
  let client: LockClient;
  const prefix = unique('drover-test/arrowhead');
  const create = (authentication: string | undefined, owner: string) =>
    client.request('create', { authentication, payload: { locks: [lock(`Auth|${owner.toLowerCase()}${Math.random().toString(36).slice(2, 8)}|1.0.0`, owner)] } });

  before(async () => {
    drover = await startLockDrover({ mqtt: 'embedded', mqttTopicPrefix: prefix, auth: writeAuthFile() });
    client = await LockClient.connect(drover.mqtt!.brokerUrl, prefix);
  });
  after(async () => {
    await client?.close();
    await drover?.close();
  });

  it('401 when the authentication field identifies nobody', async () => {
    assertError(await create(undefined, 'TemperatureManager'), client, 'create', 401, 'AUTH', 'No authentication info has been provided');
    const stranger = await create('SYSTEM//Stranger', 'Stranger');
    assertError(stranger, client, 'create', 401, 'AUTH', 'Invalid authentication info');
    assert.equal(stranger.receiver, 'Stranger');
    assertError(await create('IDENTITY-TOKEN//wrong', 'TemperatureManager'), client, 'create', 401, 'AUTH', 'Invalid authentication info');
  });

  it('403 when the principal may not manage locks, or not those of that owner', async () => {
    assertError(await create('SYSTEM//Viewer', 'Viewer'), client, 'create', 403, 'FORBIDDEN', /Viewer lacks the owner role/);
    assertError(await create('IDENTITY-TOKEN//agent-token', 'CellAgent'), client, 'create', 403, 'FORBIDDEN', /CellAgent lacks the owner role/);
    assertError(await create('SYSTEM//TemperatureManager', 'Other'), client, 'create', 403, 'FORBIDDEN', 'TemperatureManager may not manage locks of Other');
    const remove = await client.request('remove', { authentication: 'SYSTEM//TemperatureManager', params: { owner: 'Other' }, payload: ['Auth|x|1.0.0'] });
    assertError(remove, client, 'remove', 403, 'FORBIDDEN', 'TemperatureManager may not manage locks of Other');
  });

  it('serves known principals: owners their own locks, operators anyone’s, readers queries', async () => {
    const own = await create('SYSTEM//TemperatureManager', 'TemperatureManager');
    assert.equal(own.status, 201);
    assert.equal(own.receiver, 'TemperatureManager');
    const byToken = await create('IDENTITY-TOKEN//tm-secret', 'TemperatureManager');
    assert.equal(byToken.status, 201, 'the HTTP bearer token works as an identity token');
    const forOther = await create('IDENTITY-TOKEN//ops-secret', 'Other');
    assert.equal(forOther.status, 201);
    assert.equal(forOther.receiver, 'ops');
    const query = await client.request('query', { authentication: 'SYSTEM//Viewer', payload: { owners: ['TemperatureManager', 'Other'] } });
    assert.equal(query.status, 200);
    assert.equal(query.receiver, 'Viewer');
    assert.equal(query.payload.count, 3);
  });
});
