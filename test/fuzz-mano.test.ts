// Fuzzing the MANO lifecycle interface on RabbitMQ (a unique exchange) through a real Drover:
// hostile YAML bodies — mutations of valid requests, wrong types, huge and deep values, alias
// bombs, custom and language tags, several documents, bytes that are no YAML — each get an
// ERROR reply (status ERROR, error text) on the request's reply_to, leave the store
// byte-identical and the process answering with a bounded RSS. Then the limits over AMQP.

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import type { RunningDrover } from '../src/drover.js';
import { TOPIC_CREATE, TOPIC_TERMINATE } from '../src/api/amqp/mano.js';
import { waitFor } from './helpers.js';
import { assertNoPollution, BYSTANDER, FUZZER, fuzz, hostileValue, mangledBytes, mutationOf, spoiling, startFuzzDrover, StoreWatch, TIGHT_LIMITS, type Json } from './fuzz-helpers.js';

const AMQP_URL = process.env.DROVER_TEST_AMQP ?? 'amqp://guest:guest@127.0.0.1:5672';

const vnfd = (unit: Json = { path: '/bin/sleep', args: [300], instances: 1 }) => ({
  descriptor_version: 'vnfd-schema-02',
  vendor: 'eu.drover.fuzz',
  name: 'fn',
  version: '0.1',
  virtual_deployment_units: [{ id: 'vdu01', drover: unit }],
});
const createRequest = (v: Json) => ({
  NSD: { descriptor_version: 'nsd-schema-02', vendor: 'eu.drover.fuzz', name: 'svc', version: '0.1', network_functions: [{ vnf_id: 'vnf0', vnf_name: 'fn', vnf_vendor: 'eu.drover.fuzz', vnf_version: '0.1' }] },
  VNFD0: v,
  user_data: { customer: { name: 'fuzz' } },
});
const VALID_CREATE = createRequest(vnfd());
/** A create no mutation makes acceptable: its one deployment unit asks for no instances at all, or too many. */
const SPOIL_CREATE = spoiling(['VNFD0', 'virtual_deployment_units', 0, 'drover', 'instances'], fc.constantFrom(0, -1, 10 ** 9));

/** YAML texts aimed at the parser itself. */
const BILLION_LAUGHS = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', ...'bcdefghi'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`)].join('\n');
const PARSER_ATTACKS = [
  BILLION_LAUGHS,
  'x: !!python/object/apply:os.system ["touch /tmp/drover-fuzz-pwned"]',
  'x: !!js/function "function(){return 1}"',
  'x: !custom {a: 1}',
  'x: !!binary aGVsbG8=',
  'x: !!set {a, b}',
  'x: !!omap [a: 1]',
  '%TAG ! tag:evil.example,2000:\n---\nx: !pwn 1',
  'a: 1\na: 2',
  'a: 1\n---\nb: 2',
  '__proto__: {polluted: 1}\nconstructor: {prototype: {polluted: 1}}',
  '<<: {polluted: 1}\nx: 1',
  `x: ${'['.repeat(20_000)}${']'.repeat(20_000)}`,
  `x: ${'{a: '.repeat(5_000)}1${'}'.repeat(5_000)}`,
  `x: &a [*a]`,
  `x: *undefined_alias`,
  '\u0000\u0001\u0002',
  '\ufeff\ufeffx: 1',
  `x: "${'\\u0000'.repeat(10_000)}"`,
];

interface Reply {
  appId?: string;
  correlationId?: string;
  body: Json;
}

/** A MANO client as the gatekeeper is one: its own connection and exclusive reply queue. */
class ManoClient {
  readonly replies: Reply[] = [];
  private constructor(
    private readonly conn: ChannelModel,
    private readonly ch: Channel,
    private readonly exchange: string,
  ) {}

  static async open(exchange: string): Promise<ManoClient> {
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    await ch.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const client = new ManoClient(conn, ch, exchange);
    await ch.bindQueue(queue, exchange, 'fuzz.replies');
    await ch.consume(queue, (msg) => msg && client.replies.push({ ...(msg.properties as { appId?: string; correlationId?: string }), body: parse(msg.content.toString()) }), { noAck: true });
    return client;
  }

  /** Publishes raw bytes on `topic` and waits for Drover's first reply. */
  async request(topic: string, content: Buffer, appId = FUZZER.appId): Promise<Json> {
    const correlationId = randomUUID();
    this.ch.publish(this.exchange, topic, content, { appId, correlationId, replyTo: 'fuzz.replies', contentType: 'application/yaml' });
    const reply = await waitFor(() => this.replies.find((r) => r.correlationId === correlationId), `a reply to ${correlationId}`, 10_000);
    return reply.body;
  }

  async close(exchange: string, queues: string[]): Promise<void> {
    for (const q of queues) await this.ch.deleteQueue(q).catch(() => {});
    await this.ch.deleteExchange(exchange).catch(() => {});
    await this.conn.close().catch(() => {});
  }
}

const TOPICS = [TOPIC_CREATE, TOPIC_TERMINATE];

async function startManoDrover(limits = {}) {
  const exchange = `drover-fuzz-${randomBytes(4).toString('hex')}`;
  const started = await startFuzzDrover({ ...limits, amqp: AMQP_URL, amqpExchange: exchange, manoReadyTimeoutMs: 2_000 });
  await started.drover.amqp!.ready();
  return { ...started, exchange, client: await ManoClient.open(exchange) };
}

async function stop(d: { drover: RunningDrover; dataDir: string; exchange: string; client: ManoClient } | undefined) {
  if (!d) return;
  await d.drover.close();
  await d.client.close(d.exchange, TOPICS.map((t) => d.drover.amqp!.queueName(t)));
  rmSync(d.dataDir, { recursive: true, force: true });
}

function assertErrorReply(body: Json, what: string): void {
  assert.equal(body?.status, 'ERROR', `${what}: ${JSON.stringify(body).slice(0, 300)}`);
  assert.equal(typeof body.error, 'string');
  assert.ok(body.error.length > 0);
}

describe('fuzzing the MANO interface over AMQP', () => {
  let d: Awaited<ReturnType<typeof startManoDrover>>;
  let watch: StoreWatch;

  /** Sends one body; it must be refused with an ERROR reply and leave the store as it was. */
  async function attack(topic: string, content: Buffer): Promise<void> {
    assertErrorReply(await d.client.request(topic, content), `${topic} ${content.toString('latin1').slice(0, 200)}`);
    watch.unchanged(`${topic} ${content.toString('latin1').slice(0, 200)}`);
    assertNoPollution();
  }

  before(async () => {
    d = await startManoDrover();
    watch = new StoreWatch(d.dataDir);
  });
  after(() => stop(d));

  it('YAML bodies: mutations of valid requests, wrong types, huge and deep values', async () => {
    const input = fc.oneof(
      mutationOf(VALID_CREATE, SPOIL_CREATE).map((m) => [TOPIC_CREATE, m] as const),
      mutationOf({ instance_id: randomUUID() }).map((m) => [TOPIC_TERMINATE, m] as const),
      fc.tuple(fc.constantFrom(...TOPICS), hostileValue),
    );
    // JSON is YAML (flow style), and unlike the YAML writer it does not run out of stack on deep values
    await fuzz('mano-yaml', input, ([topic, body]) => attack(topic, Buffer.from(JSON.stringify(body) ?? 'null')));
  });

  it('the parser: alias bombs, custom and language tags, directives, several documents, deep flows', async () => {
    for (const text of PARSER_ATTACKS) await attack(TOPIC_CREATE, Buffer.from(text));
    await fuzz('mano-parser', fc.tuple(fc.constantFrom(...TOPICS), fc.constantFrom(...PARSER_ATTACKS)), ([topic, text]) => attack(topic, Buffer.from(text)));
  });

  it('bytes that are no YAML, or not quite', async () => {
    // damage to a create whose unit has no path: no flip gives it one
    const base = Buffer.from(stringify(createRequest(vnfd({ args: [300], instances: 1 }))));
    await fuzz('mano-bytes', fc.tuple(fc.constantFrom(...TOPICS), mangledBytes(base)), ([topic, bytes]) => attack(topic, bytes));
  });

  it('still instantiates a valid request afterwards', async () => {
    const reply = await d.client.request(TOPIC_CREATE, Buffer.from(stringify(VALID_CREATE)));
    assert.equal(reply.status, 'INSTANTIATING', JSON.stringify(reply));
  });
});

describe('limits over AMQP', () => {
  let d: Awaited<ReturnType<typeof startManoDrover>>;
  before(async () => {
    d = await startManoDrover(TIGHT_LIMITS);
  });
  after(() => stop(d));

  it('refuses a body over --message-limit with an ERROR reply, unparsed', async () => {
    const w = new StoreWatch(d.dataDir);
    const big = createRequest({ ...vnfd(), description: 'x'.repeat(TIGHT_LIMITS.messageLimit) });
    const reply = await d.client.request(TOPIC_CREATE, Buffer.from(stringify(big)));
    assertErrorReply(reply, 'over the message limit');
    assert.match(reply.error, /larger than 4096 bytes/);
    w.unchanged('a body over the message limit');
  });

  it('refuses a VNF asking for more than --max-instances', async () => {
    const w = new StoreWatch(d.dataDir);
    const reply = await d.client.request(TOPIC_CREATE, Buffer.from(stringify(createRequest(vnfd({ path: '/bin/sleep', args: [300], instances: TIGHT_LIMITS.maxInstances + 1 })))));
    assertErrorReply(reply, 'over the instance limit');
    assert.match(reply.error, /instances must be <= 3/);
    w.unchanged('a VNF over the instance limit');
    await new Promise((r) => setTimeout(r, 3_000)); // the bucket refills for the next case
  });

  it('refuses requests beyond --rate-limit with an ERROR reply, for that app_id only', async () => {
    const terminate = (appId?: string) => d.client.request(TOPIC_TERMINATE, Buffer.from(stringify({ instance_id: randomUUID() })), appId);
    for (let i = 0; i < TIGHT_LIMITS.rateBurst; i++) assert.match((await terminate()).error, /not found|no service/i);
    const refused = await terminate();
    assertErrorReply(refused, 'over the rate limit');
    assert.match(refused.error, /retry in \d+ ms/);
    assert.doesNotMatch((await terminate(BYSTANDER.appId)).error, /retry in/);
  });
});

