// The MANO lifecycle over a real RabbitMQ (127.0.0.1:5672, or DROVER_TEST_AMQP): the test
// acts as the gatekeeper with its own amqplib connection — it declares the exchange with
// the framework's flags, binds an exclusive queue to the lifecycle topics, publishes YAML
// requests with app_id / correlation_id / reply_to, and collects the replies on the same
// topic. Drover runs in-process with its embedded agent, so VNFs are real `sleep`s; each
// carries a marker in its environment so /proc tells which processes exist.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { parse, stringify } from 'yaml';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { instantiateService, serviceStatus } from '../src/core/services.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import { TOPIC_CREATE, TOPIC_TERMINATE, UNSUPPORTED_TOPICS } from '../src/api/amqp/mano.js';
import { DEFAULT_APP_ID } from '../src/api/amqp/adapter.js';
import { packagePath } from '../src/package-root.js';
import { tempDir } from './helpers.js';

const AMQP_URL = process.env.DROVER_TEST_AMQP ?? 'amqp://guest:guest@127.0.0.1:5672';
const RUN = randomBytes(4).toString('hex');
const EXCHANGE = `drover-test-${RUN}`;
const CLIENT_APP_ID = 'tng-gtk-sp';
const MARK_VAR = 'DROVER_MANO_TEST';
const READY_TIMEOUT_MS = 5000;
const TOPICS = [TOPIC_CREATE, TOPIC_TERMINATE, ...UNSUPPORTED_TOPICS];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Yaml = any;

interface Received {
  topic: string;
  appId?: string;
  correlationId?: string;
  body: Yaml;
}

// ------------------------------------------------------------------------------ processes

/** Live (non-zombie) pids whose environment carries MARK_VAR=mark (or a mark starting with it). */
function marked(mark: string, prefix = false): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      if (!env.some((kv) => (prefix ? kv.startsWith(`${MARK_VAR}=${mark}`) : kv === `${MARK_VAR}=${mark}`))) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (!/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))) pids.push(Number(name));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

const waitProcesses = (mark: string, n: number) => waitFor(() => (marked(mark).length === n ? true : undefined), `${n} processes marked ${mark}`);

// ------------------------------------------------------------------------------ the client

/** A MANO client as the gatekeeper is one: its own connection, exclusive queue, YAML bodies. */
class ManoClient {
  readonly received: Received[] = [];

  private constructor(
    private readonly conn: ChannelModel,
    readonly ch: Channel,
  ) {}

  static async open(): Promise<ManoClient> {
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    await ch.assertExchange(EXCHANGE, 'topic', { durable: false, autoDelete: false });
    const { queue } = await ch.assertQueue(`q.client.${randomUUID()}`, { exclusive: true, autoDelete: true });
    for (const topic of TOPICS) await ch.bindQueue(queue, EXCHANGE, topic);
    const client = new ManoClient(conn, ch);
    await ch.consume(
      queue,
      (msg) => {
        if (!msg) return;
        const { appId, correlationId } = msg.properties as { appId?: string; correlationId?: string };
        // our own requests come back too (same topic), some of them deliberately not YAML
        const body = appId === CLIENT_APP_ID ? msg.content.toString() : parse(msg.content.toString());
        client.received.push({ topic: msg.fields.routingKey, appId, correlationId, body });
      },
      { noAck: true },
    );
    return client;
  }

  /** Publishes a request (an object is YAML-encoded, a string goes as is); returns its correlation id. */
  request(topic: string, body: object | string, opts: { correlationId?: string; appId?: string } = {}): string {
    const correlationId = opts.correlationId ?? randomUUID();
    const content = Buffer.from(typeof body === 'string' ? body : stringify(body));
    this.ch.publish(EXCHANGE, topic, content, { appId: opts.appId ?? CLIENT_APP_ID, correlationId, replyTo: topic, contentType: 'application/yaml' });
    return correlationId;
  }

  /** Replies to one request: same correlation id, not our own app_id. */
  repliesTo(correlationId: string): Received[] {
    return this.received.filter((m) => m.correlationId === correlationId && m.appId !== CLIENT_APP_ID);
  }

  async replies(correlationId: string, n: number, timeoutMs = 10_000): Promise<Received[]> {
    return waitFor(() => (this.repliesTo(correlationId).length >= n ? this.repliesTo(correlationId) : undefined), `${n} replies to ${correlationId}`, timeoutMs);
  }

  /** Exactly `n` replies, and no more for `quietMs` after them. */
  async exactly(correlationId: string, n: number, quietMs = 700): Promise<Received[]> {
    await this.replies(correlationId, n);
    await sleep(quietMs);
    const got = this.repliesTo(correlationId);
    assert.equal(got.length, n, `exactly ${n} replies: ${JSON.stringify(got.map((r) => r.body.status))}`);
    return got;
  }

  /** A failed check closes its channel, hence a throwaway one. */
  async queueExists(queue: string): Promise<boolean> {
    const ch = await this.conn.createChannel();
    ch.on('error', () => {});
    try {
      await ch.checkQueue(queue);
      await ch.close();
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.conn.close().catch(() => {});
  }
}

/**
 * The same request from Python (test/mano-client.py: Debian's pika and PyYAML); resolves
 * with the reply bodies. Asynchronous: Drover runs in this very process.
 */
function pythonRequest(topic: string, body: object, replies: number): Promise<Yaml[]> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', [packagePath('test', 'mano-client.py'), AMQP_URL, EXCHANGE, topic, String(replies), '15'], (err, stdout, stderr) => {
      if (err) reject(new Error(`mano-client.py: ${err.message}\n${stderr}`));
      else resolve(stdout.trim().split('\n').map((line) => JSON.parse(line)));
    });
    child.stdin!.end(stringify(body));
  });
}

// ------------------------------------------------------------------------------ requests

/** A VNFD running `sleep 300` in `instances` copies, marked for the /proc scan. */
function vnfd(name: string, mark: string, instances: number, unit: object = {}): Yaml {
  return {
    descriptor_version: 'vnfd-schema-02',
    vendor: 'eu.drover.test',
    name,
    version: '0.1',
    uuid: randomUUID(),
    virtual_deployment_units: [{ id: 'vdu01', drover: { path: '/usr/bin/sleep', args: [300], env: { [MARK_VAR]: mark }, instances }, ...unit }],
  };
}

/** What the gatekeeper sends: NSD, VNFD0..n, user data. */
function createRequest(vnfds: Yaml[]): Yaml {
  const request: Yaml = {
    NSD: {
      descriptor_version: 'nsd-schema-02',
      vendor: 'eu.drover.test',
      name: 'two-functions',
      version: '0.1',
      uuid: randomUUID(),
      network_functions: vnfds.map((v: Yaml, i: number) => ({ vnf_id: `vnf${i}`, vnf_name: v.name, vnf_vendor: v.vendor, vnf_version: v.version })),
    },
    user_data: { customer: { name: 'test' } },
  };
  vnfds.forEach((v, i) => (request[`VNFD${i}`] = v));
  return request;
}

// ------------------------------------------------------------------------------ fixtures

const dataDir = tempDir('drover-mano-');
let drover: RunningDrover;
let client: ManoClient;

function start(): Promise<RunningDrover> {
  return startDrover({
    dataDir,
    agent: true,
    cellId: `mano-${RUN}`,
    http: '127.0.0.1:0',
    logLevel: 'silent',
    mqtt: 'none',
    convergeIntervalMs: 200,
    amqp: AMQP_URL,
    amqpExchange: EXCHANGE,
    manoReadyTimeoutMs: READY_TIMEOUT_MS,
  });
}

async function startServing(): Promise<void> {
  drover = await start();
  await drover.amqp!.ready();
}

const status = (id: string) => serviceStatus(drover.ctx, OPEN_MODE_PRINCIPAL, id);

/** Instantiates a service and returns its id and both replies. */
async function instantiate(vnfds: Yaml[]) {
  const cid = client.request(TOPIC_CREATE, createRequest(vnfds));
  const [first, second] = await client.replies(cid, 2, READY_TIMEOUT_MS + 5000);
  return { cid, id: first!.body.service_instance_uuid as string, first: first!, second: second! };
}

async function terminate(id: string, field: 'instance_id' | 'service_instance_uuid' = 'instance_id') {
  const cid = client.request(TOPIC_TERMINATE, { [field]: id });
  const [first, second] = await client.replies(cid, 2);
  return { first: first!, second: second! };
}

before(async () => {
  await startServing();
  client = await ManoClient.open();
});

after(async () => {
  await drover?.agent?.stopAll();
  await drover?.close();
  for (const pid of marked(`mano-${RUN}`, true)) process.kill(pid, 'SIGKILL');
  // the broker keeps non-exclusive queues: remove what this run declared
  const cleanup = await ManoClient.open().catch(() => undefined);
  if (cleanup) {
    for (const topic of TOPICS) await cleanup.ch.deleteQueue(drover.amqp!.queueName(topic));
    await cleanup.ch.deleteExchange(EXCHANGE);
    await cleanup.close();
  }
  await client?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------ tests

describe('MANO service lifecycle over RabbitMQ', () => {
  it('instantiates a 2-VNF service: INSTANTIATING, then READY with records, and the processes run', async () => {
    const mark = `mano-${RUN}-t1`;
    const { cid, id, first, second } = await instantiate([vnfd('vnf-fw', mark, 1), vnfd('vnf-lb', mark, 2)]);
    assert.equal(first.topic, TOPIC_CREATE);
    assert.equal(first.appId, DEFAULT_APP_ID);
    assert.equal(first.correlationId, cid);
    assert.equal(first.body.status, 'INSTANTIATING');
    assert.equal(first.body.error, null);
    assert.equal(typeof first.body.timestamp, 'number');
    assert.match(id, /^[0-9a-f-]{36}$/);

    assert.equal(second.body.status, 'READY', JSON.stringify(second.body));
    assert.equal(second.body.error, null);
    assert.equal(second.body.service_instance_uuid, id);
    const { nsr, vnfrs } = second.body;
    assert.equal(nsr.id, id);
    assert.equal(nsr.status, 'normal operation');
    assert.equal(vnfrs.length, 2);
    assert.deepEqual(
      nsr.network_functions.map((f: Yaml) => f.vnfr_id),
      vnfrs.map((v: Yaml) => v.id),
    );
    const vnfcs = vnfrs.map((v: Yaml) => v.virtual_deployment_units[0].vnfc_instance.length);
    assert.deepEqual(vnfcs, [1, 2]);
    assert.ok(vnfrs.every((v: Yaml) => v.virtual_deployment_units[0].vnfc_instance.every((c: Yaml) => c.state === 'RUNNING')));

    await waitProcesses(mark, 3);
    const s = await status(id);
    assert.equal(s.service.state, 'READY');
    assert.equal(s.service.kind, 'mano');
    assert.deepEqual(
      s.lrps.map((l) => l.desired.domain),
      ['mano', 'mano'],
    );
    await client.exactly(cid, 2);
  });

  it('terminates: TERMINATING, then READY once every process has stopped; the service stays queryable', async () => {
    const mark = `mano-${RUN}-t2`;
    const { id } = await instantiate([vnfd('vnf-a', mark, 1), vnfd('vnf-b', mark, 1)]);
    await waitProcesses(mark, 2);

    const { first, second } = await terminate(id, 'service_instance_uuid');
    assert.equal(first.body.status, 'TERMINATING');
    assert.equal(first.body.error, null);
    assert.equal(first.body.instance_id, id);
    assert.equal(typeof first.body.timestamp, 'number');
    assert.equal(second.body.status, 'READY', JSON.stringify(second.body));
    assert.equal(second.body.error, null);
    assert.equal(second.body.workflow, 'termination');
    assert.equal(second.body.nsr.status, 'terminated');
    assert.ok(second.body.vnfrs.every((v: Yaml) => v.status === 'terminated'));
    // READY comes after the processes are gone, not before
    assert.deepEqual(marked(mark), []);

    const s = await status(id);
    assert.equal(s.service.state, 'TERMINATED');
    assert.deepEqual(s.lrps, []);
    assert.equal((await drover.ctx.store.listDesiredLrps({ serviceId: id })).length, 0);

    // again (under the seed's name for the id): refused at once, and only once
    const cid = client.request(TOPIC_TERMINATE, { instance_id: id });
    const [again] = await client.exactly(cid, 1);
    assert.equal(again!.body.status, 'ERROR');
    assert.match(again!.body.error, /already TERMINATED/);
    assert.equal(again!.body.instance_id, id);
  });

  it('answers ERROR to an unknown instance, conflicting ids, bad YAML, missing fields and unsupported topics, and keeps serving', async () => {
    const mark = `mano-${RUN}-t3`;
    const { id } = await instantiate([vnfd('vnf-keep', mark, 1)]);
    await waitProcesses(mark, 1);

    const cases: [string, object | string, RegExp][] = [
      [TOPIC_TERMINATE, { instance_id: randomUUID() }, /not found/],
      [TOPIC_TERMINATE, { instance_id: id, service_instance_uuid: randomUUID() }, /differ/],
      [TOPIC_TERMINATE, {}, /instance_id must be/],
      [TOPIC_TERMINATE, 'instance_id: [unclosed', /not valid YAML/],
      [TOPIC_TERMINATE, '- just\n- a list', /mapping/],
      [TOPIC_TERMINATE, 'instance_id: !!python/object:os.system x', /not valid YAML/],
      [TOPIC_TERMINATE, Buffer.alloc(2 * 1024 * 1024, 'a').toString(), /larger than/],
      [TOPIC_CREATE, { VNFD0: vnfd('x', mark, 1) }, /NSD must be a mapping/],
      [TOPIC_CREATE, createRequest([]), /no VNFD0/],
      [TOPIC_CREATE, createRequest([{ name: 'no-drover', virtual_deployment_units: [{ id: 'vdu01' }] }]), /VNFD0: exactly one deployment unit must have a drover section/],
      [TOPIC_CREATE, createRequest([vnfd('bad', mark, 0)]), /instances must be a positive integer/],
      ['service.instance.scale', { instance_id: id }, /not supported/],
    ];
    const cids = cases.map(([topic, body]) => client.request(topic, body));
    for (const [i, cid] of cids.entries()) {
      const [r] = await client.exactly(cid, 1, 0);
      assert.equal(r!.body.status, 'ERROR', `case ${i}`);
      assert.match(r!.body.error, cases[i]![2], `case ${i}`);
    }
    // no reply is possible without correlation_id / reply_to: dropped, nothing else happens
    client.ch.publish(EXCHANGE, TOPIC_TERMINATE, Buffer.from(stringify({ instance_id: id })), { appId: CLIENT_APP_ID });

    await sleep(500);
    assert.equal((await status(id)).service.state, 'READY');
    assert.equal(marked(mark).length, 1, 'the running service was not touched');
    const { second } = await terminate(id);
    assert.equal(second.body.status, 'READY');
    assert.deepEqual(marked(mark), []);
  });

  it('serves a Python client (pika + PyYAML) the same way', async () => {
    const mark = `mano-${RUN}-py`;
    const created = await pythonRequest(TOPIC_CREATE, createRequest([vnfd('vnf-py', mark, 1), vnfd('vnf-py2', mark, 1)]), 2);
    assert.deepEqual(
      created.map((r) => [r.app_id, r.body.status, r.body.error]),
      [
        [DEFAULT_APP_ID, 'INSTANTIATING', null],
        [DEFAULT_APP_ID, 'READY', null],
      ],
    );
    const id = created[0].body.service_instance_uuid;
    assert.equal(created[1].body.vnfrs.length, 2);
    await waitProcesses(mark, 2);
    const terminated = await pythonRequest(TOPIC_TERMINATE, { instance_id: id }, 2);
    assert.deepEqual(
      terminated.map((r) => r.body.status),
      ['TERMINATING', 'READY'],
    );
    assert.deepEqual(marked(mark), []);
  });

  it("ignores messages carrying Drover's own app_id", async () => {
    const mark = `mano-${RUN}-t4`;
    const before = (await drover.ctx.store.listServices()).length;
    const cid = client.request(TOPIC_CREATE, createRequest([vnfd('vnf-own', mark, 1)]), { appId: DEFAULT_APP_ID });
    await sleep(1000);
    assert.deepEqual(
      client.received.filter((m) => m.correlationId === cid).map((m) => m.appId),
      [DEFAULT_APP_ID],
      'only the request itself is on the topic',
    );
    assert.equal((await drover.ctx.store.listServices()).length, before);
    assert.deepEqual(marked(mark), []);
  });

  it('answers ERROR when a function never reaches RUNNING within the timeout; it can then be terminated', async () => {
    const failing = vnfd('vnf-broken', `mano-${RUN}-t5`, 1);
    failing.virtual_deployment_units[0].drover.path = '/bin/false';
    const { first, second } = await instantiate([failing]);
    assert.equal(first.body.status, 'INSTANTIATING');
    assert.equal(second.body.status, 'ERROR');
    assert.match(second.body.error, /still INSTANTIATING after 5000 ms/);
    const id = first.body.service_instance_uuid;
    assert.equal((await status(id)).service.state, 'ERROR');
    const t = await terminate(id);
    assert.equal(t.second.body.status, 'READY');
  });

  it('handles a repeated request once, and after a Drover restart resumes it instead of running it twice', async () => {
    const mark = `mano-${RUN}-t6`;
    const request = createRequest([vnfd('vnf-once', mark, 2)]);
    const cid = randomUUID();
    client.request(TOPIC_CREATE, request, { correlationId: cid });
    client.request(TOPIC_CREATE, request, { correlationId: cid });
    const [first, second] = await client.exactly(cid, 2, 1000);
    assert.deepEqual([first!.body.status, second!.body.status], ['INSTANTIATING', 'READY']);
    const id = first!.body.service_instance_uuid;
    await waitProcesses(mark, 2);
    const mine = async () => (await drover.ctx.store.listServices()).filter((s) => (s.attributes as Yaml).createRequest?.endsWith(cid));
    assert.equal((await mine()).length, 1);

    // A restarted Drover has forgotten the request: the store recognises it (same service,
    // the running processes adopted), and the client gets the two replies again.
    await drover.close();
    await startServing();
    client.request(TOPIC_CREATE, request, { correlationId: cid });
    const again = await client.replies(cid, 4, READY_TIMEOUT_MS + 5000);
    assert.deepEqual(
      again.slice(2).map((r) => [r.body.status, r.body.service_instance_uuid]),
      [
        ['INSTANTIATING', id],
        ['READY', id],
      ],
    );
    assert.equal((await mine()).length, 1);
    assert.equal(marked(mark).length, 2);

    // The same for a termination: redelivered after a restart, it is answered again
    // (TERMINATING, then READY) without failing as "already TERMINATED".
    const terminateCid = randomUUID();
    client.request(TOPIC_TERMINATE, { instance_id: id }, { correlationId: terminateCid });
    const ended = await client.exactly(terminateCid, 2);
    assert.deepEqual(ended.map((r) => r.body.status), ['TERMINATING', 'READY']);
    assert.deepEqual(marked(mark), []);
    await drover.close();
    await startServing();
    client.request(TOPIC_TERMINATE, { instance_id: id }, { correlationId: terminateCid });
    const endedAgain = await client.replies(terminateCid, 4);
    assert.deepEqual(
      endedAgain.slice(2).map((r) => [r.body.status, r.body.error]),
      [
        ['TERMINATING', null],
        ['READY', null],
      ],
    );
    assert.equal((await status(id)).service.state, 'TERMINATED');
  });

  it('answers ERROR to a terminate naming a service that is not a MANO service, and leaves it alone', async () => {
    const other = await instantiateService(drover.ctx, OPEN_MODE_PRINCIPAL, {
      name: 'not-mano',
      kind: 'geni',
      lrps: [{ processGuid: `not-mano-${RUN}`, domain: 'geni', instances: 0, action: { run: { path: '/usr/bin/true', args: [], dir: '', env: [], user: '' } } }],
    });
    const cid = client.request(TOPIC_TERMINATE, { instance_id: other.id });
    const [r] = await client.exactly(cid, 1);
    assert.equal(r!.body.status, 'ERROR');
    assert.match(r!.body.error, /not a mano service/);
    assert.ok(!['TERMINATING', 'TERMINATED'].includes((await status(other.id)).service.state), 'not terminated');
  });

  it('reconnects after a broker restart and serves again; running services are not touched', async () => {
    const mark = `mano-${RUN}-t7`;
    const { id } = await instantiate([vnfd('vnf-survivor', mark, 1)]);
    await waitProcesses(mark, 1);

    execFileSync('rabbitmqctl', ['stop_app'], { stdio: 'ignore' });
    try {
      await sleep(500);
    } finally {
      execFileSync('rabbitmqctl', ['start_app'], { stdio: 'ignore' });
    }
    await client.close();
    client = await ManoClient.open();

    // the exchange and Drover's queues died with the broker's state: Drover must redeclare them
    const queue = drover.amqp!.queueName(TOPIC_TERMINATE);
    await waitFor(async () => ((await client.queueExists(queue)) ? true : undefined), 'Drover redeclaring its queues', 30_000);
    assert.equal(marked(mark).length, 1);
    const { first, second } = await terminate(id);
    assert.equal(first.body.status, 'TERMINATING');
    assert.equal(second.body.status, 'READY');
    assert.deepEqual(marked(mark), []);
  });
});
