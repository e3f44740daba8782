// Fuzzing the BBS LRP API (JSON and protobuf bodies) through a real Drover over HTTP: every
// hostile body gets a BBS response message (an `Error` {type, message} for anything that
// would write), the store is byte-identical after each refused input, the process keeps
// answering and its RSS stays bounded. Then the limits: body size, rate per principal,
// instances per desired LRP.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { RunningDrover } from '../src/drover.js';
import { bbsProtoRoot, decodeMessage, encodeMessage } from '../src/api/bbs/codec.js';
import { BBS_ERROR_TYPES } from '../src/api/bbs/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertNoPollution, BYSTANDER, FUZZER, fuzz, hostileValue, mangledBytes, mutationOf, spoiling, startFuzzDrover, StoreWatch, TIGHT_LIMITS, type Json } from './fuzz-helpers.js';

const PB = 'application/x-protobuf';
const JSON_CT = 'application/json';
const SEED = 'fuzz-seed';

const RUN_ACTION = { run: { path: '/bin/sleep', args: ['300'], user: 'vcap' } };
const VALID_LRP = { process_guid: 'fuzz-new', domain: 'fuzz', instances: 1, action: RUN_ACTION, annotation: 'a', routes: { r: { x: 1 } }, env: [{ name: 'A', value: 'b' }], ports: [8080], placement_tags: ['t'] };
const KEY = { process_guid: SEED, index: 0, domain: 'fuzz' };
const INSTANCE_KEY = { instance_guid: 'i-1', cell_id: 'cell-1' };

interface Route {
  path: string;
  request?: string;
  response: string;
  /** a valid request body, in BBS JSON */
  valid: Json;
  /** what makes a mutation of it surely refused (writes only) */
  spoil?: fc.Arbitrary<(m: Json) => void>;
  writes: boolean;
}

// values that stay wrong in protobuf too (where null, 1.5 and 'two' would become numbers)
const badInstances = fc.constantFrom(-1, 10 ** 9);
const ROUTES: Route[] = [
  { path: '/v1/ping', response: 'models.PingResponse', valid: {}, writes: false },
  { path: '/v1/actual_lrp_groups/list', request: 'models.ActualLRPGroupsRequest', response: 'models.ActualLRPGroupsResponse', valid: { domain: 'fuzz', cell_id: 'c' }, writes: false },
  { path: '/v1/actual_lrp_groups/list_by_process_guid', request: 'models.ActualLRPGroupsByProcessGuidRequest', response: 'models.ActualLRPGroupsResponse', valid: { process_guid: SEED }, writes: false },
  { path: '/v1/actual_lrp_groups/get_by_process_guid_and_index', request: 'models.ActualLRPGroupByProcessGuidAndIndexRequest', response: 'models.ActualLRPGroupResponse', valid: { process_guid: SEED, index: 0 }, writes: false },
  { path: '/v1/actual_lrps/list', request: 'models.ActualLRPsRequest', response: 'models.ActualLRPsResponse', valid: { domain: 'fuzz', process_guid: SEED, index: 0 }, writes: false },
  { path: '/v1/desired_lrps/list.r2', request: 'models.DesiredLRPsRequest', response: 'models.DesiredLRPsResponse', valid: { domain: 'fuzz', process_guids: [SEED] }, writes: false },
  { path: '/v1/desired_lrps/get_by_process_guid.r2', request: 'models.DesiredLRPByProcessGuidRequest', response: 'models.DesiredLRPResponse', valid: { process_guid: SEED }, writes: false },
  { path: '/v1/desired_lrp_scheduling_infos/list', request: 'models.DesiredLRPsRequest', response: 'models.DesiredLRPSchedulingInfosResponse', valid: { domain: 'fuzz' }, writes: false },
  { path: '/v1/cells/list', response: 'models.CellsResponse', valid: {}, writes: false },
  // writes: the fuzzer is an owner, so the cells' routes refuse it whatever the body
  { path: '/v1/actual_lrps/claim', request: 'models.ClaimActualLRPRequest', response: 'models.ActualLRPLifecycleResponse', valid: { process_guid: SEED, index: 0, actual_lrp_instance_key: INSTANCE_KEY }, writes: true },
  { path: '/v1/actual_lrps/start', request: 'models.StartActualLRPRequest', response: 'models.ActualLRPLifecycleResponse', valid: { actual_lrp_key: KEY, actual_lrp_instance_key: INSTANCE_KEY, actual_lrp_net_info: { address: '10.0.0.1', ports: [{ container_port: 1, host_port: 2 }] } }, writes: true },
  { path: '/v1/actual_lrps/crash', request: 'models.CrashActualLRPRequest', response: 'models.ActualLRPLifecycleResponse', valid: { actual_lrp_key: KEY, actual_lrp_instance_key: INSTANCE_KEY, error_message: 'x' }, writes: true },
  { path: '/v1/actual_lrps/fail', request: 'models.FailActualLRPRequest', response: 'models.ActualLRPLifecycleResponse', valid: { actual_lrp_key: KEY, error_message: 'x' }, writes: true },
  { path: '/v1/actual_lrps/remove', request: 'models.RemoveActualLRPRequest', response: 'models.ActualLRPLifecycleResponse', valid: { process_guid: SEED, index: 0, actual_lrp_instance_key: INSTANCE_KEY }, writes: true },
  { path: '/v1/actual_lrps/retire', request: 'models.RetireActualLRPRequest', response: 'models.ActualLRPLifecycleResponse', valid: { actual_lrp_key: { ...KEY, index: 5 } }, writes: true },
  { path: '/v1/cells/heartbeat', request: 'models.CellHeartbeatRequest', response: 'models.CellHeartbeatResponse', valid: { cell: { cell_id: 'c1', rep_address: 'http://x' } }, writes: true },
  {
    path: '/v1/desired_lrp/desire.r2',
    request: 'models.DesireLRPRequest',
    response: 'models.DesiredLRPLifecycleResponse',
    valid: { desired_lrp: VALID_LRP },
    spoil: fc.oneof(spoiling(['desired_lrp', 'instances'], badInstances), spoiling(['desired_lrp', 'action'], fc.constantFrom({}, null, { run: {} })), spoiling(['desired_lrp', 'process_guid'], fc.constantFrom('', 'a b', '../x', '\u0000'))),
    writes: true,
  },
  {
    path: '/v1/desired_lrp/update',
    request: 'models.UpdateDesiredLRPRequest',
    response: 'models.DesiredLRPLifecycleResponse',
    valid: { process_guid: SEED, update: { instances: 2, annotation: 'b' } },
    spoil: spoiling(['update', 'instances'], badInstances),
    writes: true,
  },
  {
    path: '/v1/desired_lrp/remove',
    request: 'models.RemoveDesiredLRPRequest',
    response: 'models.DesiredLRPLifecycleResponse',
    valid: { process_guid: SEED },
    spoil: spoiling(['process_guid'], fc.constantFrom('', 'no-such-lrp', 'a/b')),
    writes: true,
  },
];

let drover: RunningDrover;
let dataDir: string;
let watch: StoreWatch;

interface Answer {
  status: number;
  /** the response message as protobufjs decoded it (protobuf) or as sent (JSON) */
  body: Json;
}

async function post(url: string, path: string, body: Buffer | string, contentType: string, token = FUZZER.token): Promise<Answer> {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': contentType, authorization: `Bearer ${token}` }, body: typeof body === 'string' ? body : new Uint8Array(body) });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body: bytes };
}

const ERROR_NUMBERS = new Set<number>(Object.values(BBS_ERROR_TYPES));

/** The answer is `route`'s response message in the request's encoding; returns its error, if any. */
function errorOf(route: Route, a: Answer, contentType: string): { type: unknown; message: unknown } | undefined {
  assert.ok([200, 401, 403, 413, 429].includes(a.status), `HTTP ${a.status}`);
  if (contentType === PB) {
    const message = bbsProtoRoot().lookupType(route.response).decode(a.body) as Json;
    if (message.error) assert.ok(ERROR_NUMBERS.has(message.error.type), `error type ${message.error.type}`);
    return message.error ?? undefined;
  }
  const message = JSON.parse(a.body.toString('utf8'));
  if (message.error) assert.ok(Object.hasOwn(BBS_ERROR_TYPES, message.error.type), `error type ${message.error.type}`);
  return message.error;
}

/** Sends one hostile body; checks the answer's shape, that writes were refused, and the store. */
async function attack(route: Route, body: Buffer | string, contentType: string): Promise<void> {
  const a = await post(drover.url, route.path, body, contentType);
  const error = errorOf(route, a, contentType);
  if (a.status !== 200 || route.writes) {
    assert.ok(error, `${route.path} answered HTTP ${a.status} without an error`);
    assert.equal(typeof error.message, 'string');
  }
  if (error) watch.unchanged(`${route.path} ${String(body).slice(0, 200)}`);
  assertNoPollution();
}

/** The body of a JSON request in protobuf (only what the message type can carry survives). */
const protobufOf = (route: Route, json: Json): Buffer => encodeMessage(route.request!, decodeMessage(route.request!, Buffer.from(JSON.stringify(json)), JSON_CT), PB).body;

async function stillServing(): Promise<void> {
  const a = await post(drover.url, '/v1/desired_lrps/get_by_process_guid.r2', JSON.stringify({ process_guid: SEED }), JSON_CT);
  const body = JSON.parse(a.body.toString('utf8'));
  assert.equal(body.desired_lrp?.process_guid, SEED, JSON.stringify(body).slice(0, 300));
}

const routeArb = fc.constantFrom(...ROUTES);

/** A request no bit flip can make acceptable: it names no LRP that exists, and a desire lacks its action. */
function refusedBase(route: Route): Json {
  if (!route.writes) return route.valid;
  const m = JSON.parse(JSON.stringify(route.valid).replaceAll(SEED, 'no-such-lrp'));
  if (m.desired_lrp) delete m.desired_lrp.action;
  return m;
}

describe('fuzzing the BBS API', () => {
  before(async () => {
    ({ drover, dataDir } = await startFuzzDrover());
    const seeded = await post(drover.url, '/v1/desired_lrp/desire.r2', JSON.stringify({ desired_lrp: { ...VALID_LRP, process_guid: SEED, instances: 0 } }), JSON_CT);
    assert.equal(JSON.parse(seeded.body.toString('utf8')).error, undefined);
    watch = new StoreWatch(dataDir);
  });
  after(async () => {
    await drover?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('JSON: mutations of valid requests, wrong types, huge and deep values', async () => {
    const input = routeArb.chain((route) => fc.tuple(fc.constant(route), fc.oneof(mutationOf(route.valid, route.spoil), hostileValue)));
    await fuzz('bbs-json', input, ([route, body]) => attack(route, JSON.stringify(body) ?? '', JSON_CT));
    await stillServing();
  });

  it('JSON: bytes that are not JSON, or not quite', async () => {
    const input = routeArb.chain((route) => fc.tuple(fc.constant(route), mangledBytes(Buffer.from(JSON.stringify(refusedBase(route))))));
    await fuzz('bbs-json-bytes', input, ([route, body]) => attack(route, body, JSON_CT));
    await stillServing();
  });

  it('protobuf: mutations of valid messages, random bytes, truncations and bit flips', async () => {
    const routes = fc.constantFrom(...ROUTES.filter((r) => r.request));
    const input = routes.chain((route) =>
      fc.tuple(
        fc.constant(route),
        fc.oneof(
          mutationOf(route.valid, route.spoil).map((m) => {
            try {
              return protobufOf(route, m);
            } catch {
              return Buffer.from(JSON.stringify(m) ?? ''); // not encodable: send the JSON as protobuf
            }
          }),
          mangledBytes(protobufOf(route, refusedBase(route))),
        ),
      ),
    );
    await fuzz('bbs-protobuf', input, ([route, body]) => attack(route, body, PB));
    await stillServing();
  });

  it('deeply nested JSON and protobuf (recursion limits)', async () => {
    const deep = (n: number) => `{"desired_lrp":{"action":${'{"serial":{"actions":['.repeat(n)}{}${']}}'.repeat(n)}}}`;
    const route = ROUTES.find((r) => r.path === '/v1/desired_lrp/desire.r2')!;
    for (const n of [100, 1_000, 20_000]) await attack(route, deep(n), JSON_CT);
    // protobuf: a message field nested n deep (field 1, length-delimited, in itself)
    let nestedPb = Buffer.alloc(0);
    for (let i = 0; i < 5_000; i++) nestedPb = Buffer.concat([Buffer.from([0x0a]), varint(nestedPb.length), nestedPb]);
    await attack(route, nestedPb, PB);
    await stillServing();
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

describe('limits over the BBS API', () => {
  let limited: RunningDrover;
  let limitedDir: string;
  const desire = (guid: string, instances: number, token?: string) =>
    post(limited.url, '/v1/desired_lrp/desire.r2', JSON.stringify({ desired_lrp: { ...VALID_LRP, process_guid: guid, instances } }), JSON_CT, token);
  const json = (a: Answer) => JSON.parse(a.body.toString('utf8'));

  before(async () => {
    ({ drover: limited, dataDir: limitedDir } = await startFuzzDrover(TIGHT_LIMITS));
  });
  after(async () => {
    await limited?.close();
    rmSync(limitedDir, { recursive: true, force: true });
  });

  it('refuses a body over --body-limit with HTTP 413 and a BBS error, in JSON and protobuf', async () => {
    const big = { desired_lrp: { ...VALID_LRP, annotation: 'x'.repeat(TIGHT_LIMITS.bodyLimit) } };
    const before = new StoreWatch(limitedDir);
    const asJson = await post(limited.url, '/v1/desired_lrp/desire.r2', JSON.stringify(big), JSON_CT);
    assert.equal(asJson.status, 413);
    assert.equal(json(asJson).error.type, 'InvalidRequest');
    assert.match(json(asJson).error.message, /body/i);
    const route = ROUTES.find((r) => r.path === '/v1/desired_lrp/desire.r2')!;
    const asPb = await post(limited.url, route.path, protobufOf(route, big), PB);
    assert.equal(asPb.status, 413);
    assert.equal((bbsProtoRoot().lookupType(route.response).decode(asPb.body) as Json).error.type, BBS_ERROR_TYPES.InvalidRequest);
    before.unchanged('bodies over the limit');
  });

  it('refuses a desire or an update beyond --max-instances', async () => {
    const before = new StoreWatch(limitedDir);
    const over = json(await desire('too-many', TIGHT_LIMITS.maxInstances + 1));
    assert.equal(over.error.type, 'InvalidRequest');
    assert.match(over.error.message, new RegExp(`instances must be <= ${TIGHT_LIMITS.maxInstances}`));
    before.unchanged('a desire over the instance limit');
    assert.equal(json(await desire('at-limit', TIGHT_LIMITS.maxInstances)).error, undefined);
    const scaled = json(await post(limited.url, '/v1/desired_lrp/update', JSON.stringify({ process_guid: 'at-limit', update: { instances: TIGHT_LIMITS.maxInstances + 1 } }), JSON_CT));
    assert.match(scaled.error.message, /instance limit/);
    await sleep(3_000); // the fuzzer's bucket refills for the next case
  });

  it('answers HTTP 429 with a BBS error once a principal exceeds --rate-limit, and only that principal', async () => {
    const ping = (token?: string) => post(limited.url, '/v1/desired_lrps/list.r2', '{}', JSON_CT, token);
    for (let i = 0; i < TIGHT_LIMITS.rateBurst; i++) assert.equal((await ping()).status, 200, `request ${i + 1} of the burst`);
    const refused = await ping();
    assert.equal(refused.status, 429);
    assert.equal(json(refused).error.type, 'UnknownError');
    assert.match(json(refused).error.message, /fuzzer made more than 1 requests per second.*retry in \d+ ms/);
    assert.equal((await ping(BYSTANDER.token)).status, 200, 'another principal has its own bucket');
    await sleep(1_100);
    assert.equal((await ping()).status, 200, 'a token came back after a second');
  });
});
