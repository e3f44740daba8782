// Arrowhead locks over MQTT with two Drover replicas on one PostgreSQL schema, both clients
// of the real Mosquitto on 127.0.0.1:1883: every request must be handled by one replica only,
// so the requester gets exactly one answer (not one per replica).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import type { RunningDrover } from '../src/drover.js';
import { dropSchema, PG_URL, uniqueSchema } from './helpers.js';
import { LOCK_TOPIC, lock, MOSQUITTO_URL, sleep, startLockDrover, unique } from './locks-fixtures.js';

const schema = uniqueSchema();
const prefix = unique('drover-test/scaleout');
const answersBase = unique('drover-test/scaleout-answers');
const REQUESTS = 8;

describe('Arrowhead locks over a shared MQTT broker with 2 replicas', () => {
  const replicas: RunningDrover[] = [];
  let client: MqttClient;
  const answers = new Map<string, { status: number }[]>();

  before(async () => {
    for (let i = 0; i < 2; i++) replicas.push(await startLockDrover({ store: `${PG_URL}?schema=${schema}`, mqtt: MOSQUITTO_URL, mqttTopicPrefix: prefix, replicaId: `mqtt-r${i}` }));
    client = await mqtt.connectAsync(MOSQUITTO_URL, { reconnectPeriod: 200 });
    client.on('message', (topic, message) => answers.set(topic, [...(answers.get(topic) ?? []), JSON.parse(message.toString('utf8'))]));
    await client.subscribeAsync(`${answersBase}/#`, { qos: 2 });
  });
  after(async () => {
    await client?.endAsync(true);
    for (const r of replicas) await r.close();
    await dropSchema(schema);
  });

  it('answers each request once, and stores each lock once', async () => {
    const sids = Array.from({ length: REQUESTS }, (_, i) => `svc-${i}|${prefix.slice(-6)}|1.0.0`);
    for (const [i, sid] of sids.entries()) {
      const body = { traceId: `t${i}`, responseTopic: `${answersBase}/create-${i}`, qosRequirement: 1, authentication: 'SYSTEM//TemperatureManager', payload: { locks: [lock(sid)] } };
      await client.publishAsync(`${prefix}/${LOCK_TOPIC}/create`, JSON.stringify(body), { qos: 1 });
    }
    await client.publishAsync(`${prefix}/${LOCK_TOPIC}/query`, JSON.stringify({ traceId: 'q', responseTopic: `${answersBase}/query`, qosRequirement: 1, payload: {} }), { qos: 1 });
    // long enough for a second replica's answer to arrive, were there one
    await sleep(1500);
    for (let i = 0; i < REQUESTS; i++) assert.deepEqual(answers.get(`${answersBase}/create-${i}`)?.map((a) => a.status), [201], `create ${i}: exactly one answer`);
    const query = answers.get(`${answersBase}/query`) ?? [];
    assert.equal(query.length, 1, 'the query: exactly one answer');
    const stored = await replicas[0]!.ctx.store.queryLocks({ serviceInstanceIds: sids }, undefined, Date.now());
    assert.equal(stored.count, REQUESTS);
  });
});
