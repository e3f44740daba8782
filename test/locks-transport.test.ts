// Transport cases of the MQTT lock interface: MQTTS with a certificate made at test time,
// reconnecting after an external broker restarts, and Debian's mosquitto_pub/mosquitto_sub.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { RunningDrover } from '../src/drover.js';
import { inHours, lock, LOCK_TOPIC, LockClient, lockTempDir, MOSQUITTO_URL, selfSignedCert, sleep, startLockDrover, unique, type Answer } from './locks-fixtures.js';

describe('locks over MQTTS (embedded broker, self-signed certificate)', () => {
  let drover: RunningDrover;
  const tls = selfSignedCert();
  const prefix = unique('drover-test/arrowhead');

  before(async () => {
    drover = await startLockDrover({ mqtt: 'embedded', mqttsListen: '127.0.0.1:0', mqttTlsCert: tls.certFile, mqttTlsKey: tls.keyFile, mqttTopicPrefix: prefix });
  });
  after(() => drover?.close());

  for (const [name, options] of [
    ['3.1.1', { protocolVersion: 4 }],
    ['3.1', { protocolVersion: 3, protocolId: 'MQIsdp' }],
  ] as const) {
    it(`serves an MQTT ${name} client that trusts the certificate`, async () => {
      const url = drover.mqtt!.mqttsUrl!.replace('127.0.0.1', 'localhost');
      assert.match(url, /^mqtts:\/\/localhost:\d+$/);
      const client = await LockClient.connect(url, prefix, { ...options, ca: readFileSync(tls.certFile) });
      try {
        const created = await client.request('create', { authentication: 'SYSTEM//TemperatureManager', payload: { locks: [lock(`Tls|v${options.protocolVersion}|1.0.0`)] } });
        assert.equal(created.status, 201);
        assert.equal(created.receiver, 'TemperatureManager');
      } finally {
        await client.close();
      }
    });
  }

  it('is really TLS: a client that does not trust the certificate is refused', async () => {
    await assert.rejects(LockClient.connect(drover.mqtt!.mqttsUrl!, prefix, { reconnectPeriod: 0 }), /self[- ]signed/i);
  });
});

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(() => resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (open) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

describe('locks over an external broker that restarts', () => {
  const dir = lockTempDir('mosquitto');
  const prefix = unique('drover-test/arrowhead');
  let port: number;
  let mosquitto: ChildProcess | undefined;
  let drover: RunningDrover;
  let client: LockClient;

  // A Mosquitto of our own (not the shared one), so that the test may stop and start it.
  async function startMosquitto() {
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    mosquitto = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
    await waitForPort(port);
  }
  async function stopMosquitto() {
    const child = mosquitto!;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    mosquitto = undefined;
  }

  before(async () => {
    port = await freePort();
    await startMosquitto();
    drover = await startLockDrover({ mqtt: `mqtt://127.0.0.1:${port}`, mqttTopicPrefix: prefix });
    client = await LockClient.connect(`mqtt://127.0.0.1:${port}`, prefix);
  });
  after(async () => {
    await client?.close();
    await drover?.close();
    if (mosquitto) await stopMosquitto();
  });

  it('answers again once the broker is back', async () => {
    assert.equal((await client.request('create', { payload: { locks: [lock('Restart|svc|1.0.0')] } })).status, 201);
    await stopMosquitto();
    await sleep(300);
    await startMosquitto();
    // Both Drover and the test's client reconnect on their own; ask until Drover answers.
    let answer: Answer | undefined;
    for (const deadline = Date.now() + 15_000; !answer && Date.now() < deadline; ) {
      answer = await client.request('query', { payload: { serviceInstanceIds: ['Restart|svc|1.0.0'] } }, 1000).catch(() => undefined);
    }
    assert.ok(answer, 'Drover answered after the broker restart');
    assert.equal(answer.status, 200);
    assert.equal(answer.payload.count, 1, 'the lock outlived the broker: it lives in Drover’s store');
  });
});

/** One request through Debian's mosquitto clients: mosquitto_sub waits for the answer, mosquitto_pub asks. */
async function viaMosquittoClients(version: string, topic: string, request: object & { responseTopic: string }): Promise<Answer> {
  // stdbuf: piped stdout is block-buffered, and the SUBACK line must show before we publish
  const sub = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', '1883', '-V', version, '-t', request.responseTopic, '-C', '1', '-W', '10', '-d']);
  let out = '';
  sub.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise((r) => sub.once('exit', r));
  // -d prints the SUBACK: only then is the answer sure to reach it
  while (!out.includes('SUBACK') && sub.exitCode === null) await sleep(20);
  const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-V', version, '-q', '1', '-t', topic, '-m', JSON.stringify(request)], { stdio: 'ignore' });
  await new Promise((r) => pub.once('exit', r));
  await exited;
  const line = out.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `mosquitto_sub printed no answer:\n${out}`);
  return JSON.parse(line);
}

describe('locks with mosquitto_pub and mosquitto_sub through the shared Mosquitto', () => {
  let drover: RunningDrover;
  const prefix = unique('drover-test/arrowhead');

  before(async () => {
    drover = await startLockDrover({ mqtt: MOSQUITTO_URL, mqttTopicPrefix: prefix });
  });
  after(() => drover?.close());

  for (const version of ['mqttv31', 'mqttv311']) {
    it(`create and remove with ${version} clients`, async () => {
      const id = `Cli|${version}|1.0.0`;
      const base = `${prefix}/${LOCK_TOPIC}`;
      const created = await viaMosquittoClients(version, `${base}/create`, {
        traceId: `cli-${version}`,
        authentication: 'SYSTEM//TemperatureManager',
        responseTopic: unique('drover-test/cli'),
        qosRequirement: 1,
        payload: { locks: [lock(id, 'TemperatureManager', inHours(1))] },
      } as { responseTopic: string });
      assert.equal(created.status, 201);
      assert.equal(created.traceId, `cli-${version}`);
      assert.equal(created.payload.entries[0].serviceInstanceId, id);
      const removed = await viaMosquittoClients(version, `${base}/remove`, {
        responseTopic: unique('drover-test/cli'),
        params: { owner: 'TemperatureManager' },
        payload: [id],
      } as { responseTopic: string });
      assert.equal(removed.status, 200);
    });
  }
});
