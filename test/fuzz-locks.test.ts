// Fuzzing the Arrowhead lock interface over MQTT (the embedded broker) through a real Drover:
// request templates with hostile fields (mutations of valid ones, wrong types, huge and deep
// values) get an ErrorResponse {errorMessage, errorCode, exceptionType, origin} on their
// response topic; bytes that are no template are dropped; a refused request leaves the store
// byte-identical; the process keeps answering with a bounded RSS. Then the limits over MQTT.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { RunningDrover } from '../src/drover.js';
import { LOCK_HTTP_BASE } from '../src/api/http/locks.js';
import { inHours, LockClient, sleep, unique, type Answer, type Op } from './locks-fixtures.js';
import { assertNoPollution, BYSTANDER, FUZZER, fuzz, hostileValue, mangledBytes, mutationOf, spoiling, startFuzzDrover, StoreWatch, TIGHT_LIMITS, type Json } from './fuzz-helpers.js';

const SID = 'fuzz-svc|provider|1.0.0';
const SEEDED = 'seeded-svc|provider|1.0.0';
const VALID: Record<Op, Json> = {
  create: { authentication: FUZZER.mqtt, traceId: 't', qosRequirement: 1, payload: { locks: [{ serviceInstanceId: SID, owner: 'fuzzer', expiresAt: inHours(1), orchestrationJobId: 'job', temporary: true }] } },
  query: { authentication: FUZZER.mqtt, payload: { serviceInstanceIds: [SEEDED], owners: ['bystander'], pagination: { page: 0, size: 10, direction: 'ASC', sortField: 'id' }, expiresAfter: inHours(-1) } },
  remove: { authentication: FUZZER.mqtt, params: { owner: 'fuzzer' }, payload: [SID] },
};
/** A create stays refused whatever else changed: its first lock cannot expire at a time that is no time. */
const SPOIL_CREATE = spoiling(['payload', 'locks', 0, 'expiresAt'], fc.constantFrom('not-a-date', '2020-13-45T99:00:00Z', ''));

/** The answer is an ErrorResponse for `op`'s topic. */
function assertErrorResponse(client: LockClient, op: Op, a: Answer): void {
  const e = a.payload;
  assert.equal(typeof e?.errorMessage, 'string', JSON.stringify(a).slice(0, 300));
  assert.equal(e.errorCode, a.status);
  assert.ok(a.status >= 400 && a.status < 600);
  assert.equal(typeof e.exceptionType, 'string');
  assert.equal(e.origin, client.topic(op));
}

let drover: RunningDrover;
let dataDir: string;
let client: LockClient;
let watch: StoreWatch;
const prefix = unique('drover-fuzz/arrowhead');

async function stillServing(): Promise<void> {
  const a = await client.request('query', { authentication: FUZZER.mqtt, payload: { serviceInstanceIds: [SEEDED] } });
  assert.equal(a.status, 200);
  assert.equal(a.payload.count, 1);
}

describe('fuzzing the Arrowhead locks over MQTT', () => {
  before(async () => {
    ({ drover, dataDir } = await startFuzzDrover({ mqtt: 'embedded', mqttListen: '127.0.0.1:0', mqttTopicPrefix: prefix }));
    client = await LockClient.connect(drover.mqtt!.brokerUrl, prefix);
    const seeded = await client.request('create', { authentication: BYSTANDER.mqtt, payload: { locks: [{ serviceInstanceId: SEEDED, owner: 'bystander', expiresAt: inHours(2) }] } });
    assert.equal(seeded.status, 201, JSON.stringify(seeded));
    watch = new StoreWatch(dataDir);
  });
  after(async () => {
    await client?.close();
    await drover?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('request templates: mutations of valid ones, wrong types, huge and deep values', async () => {
    const op = fc.constantFrom<Op>('create', 'query', 'remove');
    const input = op.chain((o) => fc.tuple(fc.constant(o), fc.oneof(mutationOf(VALID[o], o === 'create' ? SPOIL_CREATE : undefined), fc.record({ payload: hostileValue, params: hostileValue }))));
    await fuzz('locks-template', input, async ([o, template]) => {
      // the template's own responseTopic would take the answer elsewhere: the client sets it
      const { responseTopic: _ignored, ...rest } = template as Json;
      const a = await client.request(o, typeof template === 'object' && template !== null && !Array.isArray(template) ? rest : { payload: template });
      if (a.status >= 300 || o === 'create') {
        assertErrorResponse(client, o, a);
        watch.unchanged(`${o} ${JSON.stringify(template)?.slice(0, 200)}`);
      } else await watch.settle();
      assertNoPollution();
    });
    await stillServing();
  });

  it('regression: a responseTopic longer than MQTT can carry is dropped, and answers go on', async () => {
    // Drover used to publish its answer there: mqtt.js threw while writing the packet and the
    // lock interface answered nothing more
    await client.client.publishAsync(client.topic('query'), JSON.stringify({ responseTopic: 'x'.repeat(65_536), payload: {} }), { qos: 1 });
    await stillServing();
  });

  it('bytes that are no template, or not quite one, are dropped and nothing else changes', async () => {
    const base = Buffer.from(JSON.stringify({ ...VALID.create, payload: { locks: [{ serviceInstanceId: SID, owner: 'fuzzer', expiresAt: 'not-a-date' }] }, responseTopic: client.newResponseTopic() }));
    const input = fc.tuple(fc.constantFrom<Op>('create', 'query', 'remove'), fc.oneof(mangledBytes(base), fc.constantFrom(Buffer.from('null'), Buffer.from('[]'), Buffer.from('"x"'), Buffer.from('{"responseTopic":"a/+/#"}'), Buffer.from(`{"responseTopic":${JSON.stringify('x'.repeat(70_000))}}`))));
    await fuzz('locks-bytes', input, async ([o, bytes]) => {
      await client.client.publishAsync(client.topic(o), bytes, { qos: 1 });
      // answered in order after the input: Drover has taken it by then
      await stillServing();
      watch.unchanged(`${o} ${bytes.toString('latin1').slice(0, 200)}`);
    });
  });
});

describe('limits over MQTT', () => {
  let limited: RunningDrover;
  let limitedDir: string;
  let c: LockClient;
  const limitedPrefix = unique('drover-fuzz/arrowhead-limits');

  before(async () => {
    ({ drover: limited, dataDir: limitedDir } = await startFuzzDrover({ ...TIGHT_LIMITS, mqtt: 'embedded', mqttListen: '127.0.0.1:0', mqttTopicPrefix: limitedPrefix }));
    c = await LockClient.connect(limited.mqtt!.brokerUrl, limitedPrefix);
  });
  after(async () => {
    await c?.close();
    await limited?.close();
    rmSync(limitedDir, { recursive: true, force: true });
  });

  it('answers a request over --message-limit with a 413 ErrorResponse, unparsed', async () => {
    const w = new StoreWatch(limitedDir);
    const locks = Array.from({ length: 100 }, (_, i) => ({ serviceInstanceId: `svc-${i}|p|1.0.0`, owner: 'fuzzer', expiresAt: inHours(1) }));
    const a = await c.request('create', { authentication: FUZZER.mqtt, payload: { locks } });
    assert.equal(a.status, 413);
    assertErrorResponse(c, 'create', a);
    assert.equal(a.payload.exceptionType, 'INVALID_PARAMETER');
    assert.match(a.payload.errorMessage, /larger than 4096 bytes/);
    w.unchanged('a create over the message limit');
  });

  it('over HTTP, answers a body over --body-limit with a 413 ErrorResponse', async () => {
    const locks = Array.from({ length: 100 }, (_, i) => ({ serviceInstanceId: `svc-${i}|p|1.0.0`, owner: 'fuzzer', expiresAt: inHours(1) }));
    const res = await fetch(`${limited.url}${LOCK_HTTP_BASE}/create`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${FUZZER.mqtt}` }, body: JSON.stringify({ locks }) });
    assert.equal(res.status, 413);
    const e = (await res.json()) as Json;
    assert.deepEqual([e.errorCode, e.exceptionType, e.origin], [413, 'INVALID_PARAMETER', `POST ${LOCK_HTTP_BASE}/create`]);
    assert.equal(typeof e.errorMessage, 'string');
  });

  it('answers 429 once a principal exceeds --rate-limit, and only that principal', async () => {
    const query = (auth = FUZZER.mqtt) => c.request('query', { authentication: auth, payload: {} });
    for (let i = 0; i < TIGHT_LIMITS.rateBurst; i++) assert.equal((await query()).status, 200);
    const refused = await query();
    assert.equal(refused.status, 429);
    assertErrorResponse(c, 'query', refused);
    assert.match(refused.payload.errorMessage, /retry in \d+ ms/);
    assert.equal((await query(BYSTANDER.mqtt)).status, 200);
    await sleep(1_100);
    assert.equal((await query()).status, 200);
  });
});
