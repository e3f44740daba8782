// Broker restarts with requests in flight. Arrowhead lock creates go over a Mosquitto of the
// test's own (restarted by SIGKILL several times: the shared one stays up) and MANO
// instantiations over RabbitMQ (`rabbitmqctl stop_app` / `start_app`). A client without an
// answer retries the same request (same lock id; same MANO correlation id); afterwards every
// request that got a success answer is stored, and none was applied twice.
// The MQTT URL carries a password: it must not reach the (debug) log.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import pino from 'pino';
import { parse, stringify } from 'yaml';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { TOPIC_CREATE } from '../src/api/amqp/mano.js';
import { DEFAULT_APP_ID } from '../src/api/amqp/adapter.js';
import { tempDir, waitFor } from './helpers.js';
import { inHours, lock, LockClient } from './locks-fixtures.js';
import { PrivateMosquitto } from './private-mosquitto.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const RUN = randomBytes(4).toString('hex');
const AMQP_URL = process.env.DROVER_TEST_AMQP ?? 'amqp://guest:guest@127.0.0.1:5672';
const dirs: string[] = [];
const running: RunningDrover[] = [];

function dir(): string {
  const d = tempDir('drover-brokers-');
  dirs.push(d);
  return d;
}

after(async () => {
  for (const d of running) await d.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A Drover without agent or convergence noise, logging at debug level into a file. */
async function drover(dataDir: string, options: Parameters<typeof startDrover>[0]): Promise<{ d: RunningDrover; logFile: string }> {
  const logFile = join(dataDir, 'drover.log');
  const d = await startDrover(
    { dataDir, agent: false, http: '127.0.0.1:0', logLevel: 'debug', convergeIntervalMs: 3_600_000, ...options },
    pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true })),
  );
  running.push(d);
  return { d, logFile };
}

describe('broker restarts with requests in flight', () => {
  it('Mosquitto: every answered lock create is stored, retries do not apply twice', { timeout: 120_000 }, async () => {
    const base = dir();
    const mosquitto = await PrivateMosquitto.start(base);
    const password = `mqtt-password-${randomBytes(12).toString('hex')}`;
    const prefix = `drover-brokers-${RUN}`;
    const { d, logFile } = await drover(base, { mqtt: `mqtt://drover:${password}@127.0.0.1:${mosquitto.port}`, mqttTopicPrefix: prefix });
    const client = await LockClient.connect(mosquitto.url, prefix);
    const ids = Array.from({ length: 60 }, (_, i) => `Brokers|${RUN}-${i}|1.0.0`);
    const created = new Set<string>();
    const foundApplied = new Set<string>();
    let retries = 0;
    let restarts = 0;
    try {
      let next = 0;
      const worker = async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          for (let attempt = 1; ; attempt++) {
            assert.ok(attempt <= 30, `${id}: no answer after 30 attempts`);
            let a;
            try {
              a = await client.request('create', { payload: { locks: [lock(id, 'BrokerTest', inHours(1))] } }, 1500);
            } catch {
              retries++;
              continue; // no answer: the same request again
            }
            if (a.status === 201) created.add(id);
            else {
              // only a retry may find its lock there already: the first attempt was applied
              assert.ok(attempt > 1 && a.status === 400 && /Already locked/.test(a.payload.errorMessage), `${id}: ${JSON.stringify(a)}`);
              foundApplied.add(id);
            }
            break;
          }
          await sleep(20);
        }
      };
      const restarter = async () => {
        for (let i = 0; i < 3; i++) {
          await sleep(300 + Math.floor(Math.random() * 500));
          await mosquitto.down();
          await sleep(400);
          await mosquitto.up();
          restarts++;
        }
      };
      await Promise.all([worker(), worker(), worker(), restarter()]);
    } finally {
      await client.close();
      await mosquitto.down();
    }
    const stored = (await d.ctx.store.queryLocks({}, undefined, Date.now())).entries.filter((l) => l.owner === 'BrokerTest');
    const perId = new Map<string, number>();
    for (const l of stored) perId.set(l.serviceInstanceId, (perId.get(l.serviceInstanceId) ?? 0) + 1);
    for (const id of created) assert.equal(perId.get(id), 1, `answered create ${id} is stored once`);
    for (const id of foundApplied) assert.equal(perId.get(id), 1, `retried create ${id} is stored once`);
    assert.equal(stored.length, ids.length, 'every lock once, none more');
    assert.equal(restarts, 3);
    console.log(`# broker-figures mosquitto: ${JSON.stringify({ requests: ids.length, restarts, answered201: created.size, answeredOnRetry: foundApplied.size, retries })}`);
    assert.ok(!readFileSync(logFile, 'utf8').includes(password), 'the MQTT password is not logged');
  });

  it('RabbitMQ: every answered instantiation is stored, retries (same correlation id) do not apply twice', { timeout: 180_000 }, async () => {
    const exchange = `drover-brokers-${RUN}`;
    const { d } = await drover(dir(), { mqtt: 'none', amqp: AMQP_URL, amqpExchange: exchange, manoReadyTimeoutMs: 600_000 });
    await d.amqp!.ready();

    // the gatekeeper: its own connection, opened again after the broker comes back
    const firstReplies = new Map<string, Json>();
    let conn: ChannelModel | undefined;
    let ch: Channel | undefined;
    const connect = async () => {
      conn = await amqp.connect(AMQP_URL);
      conn.on('error', () => {});
      conn.on('close', () => {
        conn = undefined;
        ch = undefined;
      });
      const c = await conn.createChannel();
      c.on('error', () => {});
      await c.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
      const { queue } = await c.assertQueue('', { exclusive: true, autoDelete: true });
      await c.bindQueue(queue, exchange, TOPIC_CREATE);
      await c.consume(
        queue,
        (msg) => {
          if (!msg) return;
          const { appId, correlationId } = msg.properties as { appId?: string; correlationId?: string };
          if (appId === DEFAULT_APP_ID && correlationId && !firstReplies.has(correlationId)) firstReplies.set(correlationId, parse(msg.content.toString()));
        },
        { noAck: true },
      );
      ch = c;
    };
    await connect();

    const requests = Array.from({ length: 16 }, (_, i) => {
      const name = `vnf-${RUN}-${i}`;
      const vnfd = { descriptor_version: 'vnfd-schema-02', vendor: 'eu.drover.test', name, version: '0.1', uuid: randomUUID(), virtual_deployment_units: [{ id: 'vdu01', drover: { path: '/usr/bin/sleep', args: [300], instances: 1 } }] };
      const body = {
        NSD: { descriptor_version: 'nsd-schema-02', vendor: 'eu.drover.test', name: `ns-${RUN}-${i}`, version: '0.1', uuid: randomUUID(), network_functions: [{ vnf_id: 'vnf0', vnf_name: name, vnf_vendor: vnfd.vendor, vnf_version: vnfd.version }] },
        VNFD0: vnfd,
      };
      return { correlationId: randomUUID(), body: Buffer.from(stringify(body)), sent: 0 };
    });
    const publish = (r: (typeof requests)[number]) => {
      try {
        if (!ch) return;
        ch.publish(exchange, TOPIC_CREATE, r.body, { appId: 'tng-gtk-sp', correlationId: r.correlationId, replyTo: TOPIC_CREATE, contentType: 'application/yaml' });
        r.sent++;
      } catch {
        // the channel died with the broker: sent again below
      }
    };

    // half before the restart, the rest while it goes down
    for (const r of requests.slice(0, 8)) publish(r);
    const stopping = (async () => {
      await sleep(50);
      execFileSync('rabbitmqctl', ['stop_app'], { stdio: 'ignore' });
    })();
    for (const r of requests.slice(8)) {
      publish(r);
      await sleep(30);
    }
    await stopping;
    try {
      await sleep(500);
    } finally {
      execFileSync('rabbitmqctl', ['start_app'], { stdio: 'ignore' });
    }
    await waitFor(async () => (conn ? true : (await connect(), true)), 'the client connected again', 30_000, 500);
    // Drover redeclares its queues; until then a request finds no queue: keep retrying
    let retries = 0;
    await waitFor(
      async () => {
        const open = requests.filter((r) => !firstReplies.has(r.correlationId));
        if (open.length === 0) return true;
        for (const r of open) publish(r);
        retries += open.length;
        await sleep(700);
        return undefined;
      },
      'a first reply to every request',
      60_000,
      0,
    );
    await conn?.close().catch(() => {});

    const services = (await d.ctx.store.listServices()).filter((s) => s.kind === 'mano');
    for (const r of requests) {
      const reply = firstReplies.get(r.correlationId)!;
      assert.equal(reply.status, 'INSTANTIATING', `${r.correlationId}: ${JSON.stringify(reply)}`);
      assert.equal(services.filter((s) => s.id === reply.service_instance_uuid).length, 1, `answered instantiation ${reply.service_instance_uuid} is stored once`);
    }
    assert.equal(services.length, requests.length, 'one service per request, none twice');
    const desired = await d.ctx.store.listDesiredLrps();
    assert.equal(desired.filter((x) => services.some((s) => s.id === x.serviceId)).length, requests.length, 'one desired LRP per service');
    console.log(`# broker-figures rabbitmq: ${JSON.stringify({ requests: requests.length, restarts: 1, published: requests.reduce((n, r) => n + r.sent, 0), retries })}`);
  });
});
