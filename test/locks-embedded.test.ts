// The lock interface inside the embedded broker: Drover subscribes and answers through Aedes'
// in-process API, with no MQTT client of its own. What Drover's client used to give by being a
// client is checked here: a request is taken from the broker at once (a QoS 2 publisher's
// handshake does not wait for the handler), requests are handled side by side, and an answer
// the broker refuses leaves Drover serving. And the embedded default loads neither `mqtt` nor,
// until a client connects, aedes.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { RunningDrover } from '../src/drover.js';
import { lock, lockTempDir, LockClient, MOSQUITTO_URL, sleep, startLockDrover, unique } from './locks-fixtures.js';

/** `promise`, or a failure naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('locks in the embedded broker, through its in-process API', () => {
  let drover: RunningDrover;
  let client: LockClient;
  const prefix = unique('drover-test/inproc');
  const sid = (name: string) => `${name}|svc${prefix.slice(-6)}|1.0.0`;
  const count = async (id: string) => (await client.request('query', { payload: { serviceInstanceIds: [id] } })).payload.count as number;

  before(async () => {
    drover = await startLockDrover({ mqtt: 'embedded', mqttTopicPrefix: prefix });
    client = await LockClient.connect(drover.mqtt!.brokerUrl, prefix);
  });
  after(async () => {
    await client?.close();
    await drover?.close();
  });

  it('takes a QoS 2 request at once and answers others while its handler waits on the store', async () => {
    const held = sid('Held');
    const store = drover.ctx.store;
    const insertLocks = store.insertLocks;
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered = () => {};
    const inside = new Promise<void>((resolve) => (entered = resolve));
    // the next lock create stops in its transaction until released
    store.insertLocks = async (locks) => {
      store.insertLocks = insertLocks;
      entered();
      await gate;
      return insertLocks.call(store, locks);
    };
    const pubcomp = new Promise<void>((resolve) => client.client.on('packetreceive', (p) => p.cmd === 'pubcomp' && resolve()));
    try {
      const topic = client.newResponseTopic();
      const answer = client.send('create', JSON.stringify({ traceId: 'held', responseTopic: topic, qosRequirement: 2, payload: { locks: [lock(held)] } }), topic, 5000, 2);
      await within(inside, 2000, 'the create reaching its transaction');
      await within(pubcomp, 2000, "the broker's PUBCOMP to the QoS 2 request while its handler waits");
      assert.equal(await within(count(held), 2000, 'a query answered while the create waits'), 0);
      release();
      const created = await answer;
      assert.equal(created.status, 201);
      assert.equal(created.traceId, 'held');
      assert.equal(created.qos, 2);
      assert.equal(await count(held), 1);
    } finally {
      release();
      store.insertLocks = insertLocks;
    }
  });

  it('answers with QoS 1 many requests published at once, each once', async () => {
    const topics = Array.from({ length: 50 }, () => client.newResponseTopic());
    const answers = await Promise.all(topics.map((t, i) => client.send('query', JSON.stringify({ traceId: `burst-${i}`, responseTopic: t, qosRequirement: 1, payload: {} }), t)));
    assert.deepEqual(
      answers.map((a) => [a.status, a.traceId, a.qos]),
      topics.map((_, i) => [200, `burst-${i}`, 1]),
    );
  });

  it('publishes no answer the broker refuses ($SYS/ topics, too many levels) and goes on answering at once', async () => {
    const watcher = await LockClient.connect(drover.mqtt!.brokerUrl, prefix);
    try {
      const seen: string[] = [];
      watcher.client.on('message', (topic) => seen.push(topic));
      await watcher.client.subscribeAsync('$SYS/drover-test/#', { qos: 1 });
      for (const responseTopic of ['$SYS/drover-test/answer', Array.from({ length: 101 }, (_, i) => `l${i}`).join('/')]) {
        await client.client.publishAsync(client.topic('query'), JSON.stringify({ responseTopic, qosRequirement: 1, payload: {} }), { qos: 1 });
        // Drover's own MQTT client was disconnected by the broker for such a publish and missed
        // requests until it reconnected a second later
        assert.equal((await client.request('query', { payload: {} }, 500)).status, 200);
      }
      await sleep(100);
      assert.deepEqual(seen, []);
    } finally {
      await watcher.close();
    }
  });
});

describe('loaded on first use: the MQTT client and aedes', () => {
  it('loads neither in the embedded default until a client connects (then aedes, without its number cache), and the client for an external broker', async () => {
    // a process of its own: the test process has loaded mqtt for its clients
    const drover = new URL('../src/drover.js', import.meta.url).href;
    const script = `
      import { createRequire } from 'node:module';
      import net from 'node:net';
      const { startDrover } = await import(${JSON.stringify(drover)});
      const require = createRequire(import.meta.url);
      const cache = require.cache;
      // aedes is ESM; mqtt-packet, its encoder, is CommonJS and loads with it
      const loaded = () => [...new Set(Object.keys(cache).flatMap((f) => /[\\\\/]node_modules[\\\\/](mqtt|mqtt-packet|ws|socks)[\\\\/]/.exec(f)?.[1] ?? []))].sort();
      // an MQTT 3.1.1 CONNECT (client id "x", clean session), answered by a CONNACK
      const connect = (url) => new Promise((resolve, reject) => {
        const { hostname, port } = new URL(url);
        const socket = net.connect(Number(port), hostname, () => socket.write(Buffer.from('100d00044d5154540402003c000178', 'hex')));
        socket.once('data', (d) => { socket.destroy(); resolve(d.toString('hex')); });
        socket.once('error', reject);
      });
      const report = {};
      for (const mqtt of ['embedded', ${JSON.stringify(MOSQUITTO_URL)}]) {
        const d = await startDrover({ dataDir: ${JSON.stringify(lockTempDir('first-use'))}, http: '127.0.0.1:0', mqtt, mqttListen: '127.0.0.1:0', mqttTopicPrefix: ${JSON.stringify(unique('drover-test/first-use'))}, logLevel: 'silent' });
        report[mqtt] = { serving: !!d.mqtt, loaded: loaded() };
        if (mqtt === 'embedded') {
          report[mqtt].connack = await connect(d.mqtt.brokerUrl);
          report[mqtt].loadedAfterConnect = loaded();
          // aedes' encoder: its cache of 65,536 number Buffers (6.5 MiB) must stay off
          report[mqtt].cacheNumbers = require(createRequire(require.resolve('aedes')).resolve('mqtt-packet')).writeToStream.cacheNumbers;
        }
        await d.close();
      }
      console.log(JSON.stringify(report));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 });
    const report = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, { serving: boolean; loaded: string[]; connack?: string; loadedAfterConnect?: string[]; cacheNumbers?: boolean }>;
    assert.deepEqual(report.embedded, { serving: true, loaded: [], connack: '20020000', loadedAfterConnect: ['mqtt-packet'], cacheNumbers: false });
    assert.equal(report[MOSQUITTO_URL]?.serving, true);
    assert.ok(report[MOSQUITTO_URL].loaded.includes('mqtt'), JSON.stringify(report));
  });
});
