// The authorization matrix: every write operation of every interface (BBS, Era REST,
// Arrowhead locks over HTTP and MQTT, MANO over AMQP, GENI over XML-RPC/HTTPS, the operator
// service routes and the dashboard) is called by a caller with no identity, with the wrong
// role, with the right role but not the owner (a lock held by another, another's service,
// another cell's instance, a shut-down slice) and by the right principal. Each refusal is the
// interface's own 401/403 equivalent and leaves the store unchanged; only the right principal
// succeeds.
//
// The same Drover runs with debug logging into a file, on a PostgreSQL URL carrying a
// password, and every kind of secret goes over the wire (bearer tokens, MQTT identity tokens,
// GENI credential XML, TLS private keys, the database password): none may appear in the log.

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import pino from 'pino';
import { parse, stringify } from 'yaml';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { snapshot } from '../src/converge/loop.js';
import { plan } from '../src/converge/planner.js';
import { settleServices } from '../src/core/services.js';
import { LOCK_HTTP_BASE } from '../src/api/http/locks.js';
import { TOPIC_CREATE, TOPIC_TERMINATE } from '../src/api/amqp/mano.js';
import { DEFAULT_APP_ID } from '../src/api/amqp/adapter.js';
import { issueUserCertificate, type KeyPairFiles } from '../src/pki/ca.js';
import { issueCredential } from '../src/pki/credential.js';
import { geniUrn, OPERATOR_URN } from '../src/pki/urn.js';
import { xmlRpcCall, type XmlRpcTarget } from '../src/api/xmlrpc/client.js';
import type { XmlRpcValue } from '../src/api/xmlrpc/codec.js';
import { GENI } from '../src/api/xmlrpc/geni.js';
import { serviceInstanceIdOf } from '../src/model/lock.js';
import { dropSchema, PG_URL, tempDir, uniqueSchema, waitFor } from './helpers.js';
import { inHours, lock, LockClient } from './locks-fixtures.js';
import { MSERVICES, serviceZip } from './era-fixtures.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const RUN = randomBytes(4).toString('hex');
const secret = (what: string) => `${what}-${randomBytes(16).toString('hex')}`;
const TOKENS = { ops: secret('ops-token'), alice: secret('alice-token'), bob: secret('bob-token'), cell: secret('cell-token'), viewer: secret('viewer-token') };
const MQTT_TOKENS = { alice: secret('alice-mqtt'), bob: secret('bob-mqtt'), viewer: secret('viewer-mqtt') };
const PG_PASSWORD = secret('pg-password');
const AMQP_URL = process.env.DROVER_TEST_AMQP ?? 'amqp://guest:guest@127.0.0.1:5672';
const EXCHANGE = `drover-authz-${RUN}`;
const URNS = { alice: geniUrn('user', 'alice'), bob: geniUrn('user', 'bob'), viewer: geniUrn('user', 'viewer'), stranger: geniUrn('user', 'stranger') };
const RSPEC_VERSION = { geni_rspec_version: { type: 'GENI', version: '3' } };

type Who = 'anonymous' | 'ops' | 'alice' | 'bob' | 'cell' | 'viewer';
/** What a call came to, in terms common to every interface. */
type Outcome = 'ok' | 'unauthenticated' | 'forbidden' | `refused: ${string}`;

const dir = tempDir('drover-authz-');
const schema = uniqueSchema();
const logFile = join(dir, 'drover.log');
const cells: { iface: string; op: string; caller: string; outcome: Outcome }[] = [];
let drover: RunningDrover;
let pkiCa: KeyPairFiles;
const certs: Partial<Record<Who | 'stranger', KeyPairFiles>> = {};
/** every secret that went over the wire, for the log check */
const wireSecrets = new Set<string>([...Object.values(TOKENS), ...Object.values(MQTT_TOKENS), PG_PASSWORD]);

// ------------------------------------------------------------------------------ clients

async function http(method: string, path: string, who: Who, body?: unknown): Promise<{ status: number; body: Json }> {
  const headers: Record<string, string> = {};
  if (who !== 'anonymous') headers.authorization = `Bearer ${TOKENS[who]}`;
  let payload: BodyInit | undefined;
  if (Buffer.isBuffer(body)) {
    payload = new Uint8Array(body);
    headers['content-type'] = 'application/zip';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(drover.url + path, { method, headers, body: payload });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** HTTP status to outcome: 401/403 are the refusals of interest, any other error is named. */
function byStatus(r: { status: number; body: Json }): Outcome {
  if (r.status === 401) return 'unauthenticated';
  if (r.status === 403) return 'forbidden';
  if (r.status >= 200 && r.status < 300 && !r.body?.error) return 'ok';
  return `refused: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
}

const bbs = async (path: string, who: Who, body: object): Promise<Outcome> => {
  const r = await http('POST', path, who, body);
  if (r.status === 200 && r.body?.error) return `refused: ${r.body.error.type}`;
  return byStatus(r);
};

let mqttClient: LockClient;
async function mqttLock(op: 'create' | 'remove', who: Who, template: object): Promise<Outcome> {
  const authentication = who === 'anonymous' ? undefined : who === 'ops' || who === 'cell' ? undefined : `IDENTITY-TOKEN//${MQTT_TOKENS[who]}`;
  const a = await mqttClient.request(op, { ...template, ...(authentication ? { authentication } : {}) });
  if (a.status === 401) return 'unauthenticated';
  if (a.status === 403) return 'forbidden';
  if (a.status >= 200 && a.status < 300) return 'ok';
  return `refused: ${a.status} ${JSON.stringify(a.payload)}`;
}

let manoConn: ChannelModel;
let manoCh: Channel;
const manoReplies = new Map<string, Json>();
async function mano(topic: string, who: Who, body: object): Promise<{ outcome: Outcome; id?: string }> {
  const correlationId = randomUUID();
  const appId = who === 'anonymous' ? undefined : `${who}-app`;
  manoCh.publish(EXCHANGE, topic, Buffer.from(stringify(body)), { ...(appId ? { appId } : {}), correlationId, replyTo: topic, contentType: 'application/yaml' });
  const first = await waitFor(() => manoReplies.get(correlationId), `MANO reply to ${topic}`, 10_000);
  if (first.status !== 'ERROR') return { outcome: 'ok', id: first.service_instance_uuid };
  if (/not identified/.test(first.error)) return { outcome: 'unauthenticated' };
  if (/lacks|may not|belongs to/.test(first.error)) return { outcome: 'forbidden' };
  return { outcome: `refused: ${first.error}` };
}

const pem = (file: string) => readFileSync(file, 'utf8');
function geniCredential(user: string, slice: string): XmlRpcValue {
  const xml = issueCredential({ ownerUrn: user, targetUrn: slice, expires: Date.now() + 3_600_000, privileges: ['*'] }, { cert: pem(pkiCa.cert), key: pem(pkiCa.key) });
  wireSecrets.add(xml.match(/<SignatureValue>([^<]{40})/)?.[1] ?? xml);
  return [{ geni_type: 'geni_sfa', geni_version: '3', geni_value: xml }];
}
const urnOf = (who: Who | 'stranger') => (who === 'ops' ? OPERATOR_URN : URNS[who as keyof typeof URNS] ?? geniUrn('user', who));

/** A GENI call as `who` (anonymous: no client certificate), with `who`'s credential for `slice`. */
async function geni(who: Who | 'stranger', method: string, slice: string, build: (cred: XmlRpcValue) => XmlRpcValue[]): Promise<Outcome> {
  const t: XmlRpcTarget = { url: drover.geni!.url, ca: pem(pkiCa.cert) };
  if (who !== 'anonymous') Object.assign(t, { cert: pem(certs[who]!.cert), key: pem(certs[who]!.key) });
  let r: Json;
  try {
    r = await xmlRpcCall(t, method, build(geniCredential(urnOf(who), slice)));
  } catch (e) {
    // no client certificate: the TLS handshake itself refuses the caller
    if (who === 'anonymous') return 'unauthenticated';
    throw e;
  }
  if (r.code.geni_code === 0) return 'ok';
  if (r.code.geni_code === GENI.FORBIDDEN) return 'forbidden';
  return `refused: ${r.code.geni_code} ${r.output}`;
}

function rspec(nodes: string[]): string {
  const body = nodes.map((id) => `<node client_id="${id}" exclusive="false"><sliver_type name="drover-process"/><drover:process path="/usr/bin/sleep"><drover:arg>300</drover:arg></drover:process></node>`);
  return `<?xml version="1.0"?><rspec type="request" xmlns="http://www.geni.net/resources/rspec/3" xmlns:drover="urn:drover:rspec:process:1">${body.join('')}</rspec>`;
}

// ------------------------------------------------------------------------------ the store

/**
 * Waits (bounded) until the convergence loop has nothing left to do and the store holds still
 * (services follow their instances a moment later); returns the store's state then.
 */
async function settled(): Promise<Json> {
  const deadline = Date.now() + 10_000;
  for (let quiet = 0; quiet < 3; ) {
    quiet = plan(await snapshot(drover.ctx)).length === 0 ? quiet + 1 : 0;
    if (Date.now() > deadline) throw new Error('convergence did not settle');
    await sleep(20);
  }
  await settleServices(drover.ctx); // what the service watcher would do next, now
  let state = await storeState();
  for (;;) {
    await sleep(100);
    const again = await storeState();
    if (JSON.stringify(again) === JSON.stringify(state)) return state;
    if (Date.now() > deadline) throw new Error('the store did not hold still');
    state = again;
  }
}

/** Everything a write could change (less what convergence and heartbeats move on their own). */
async function storeState(): Promise<Json> {
  const s = drover.ctx.store;
  return {
    desired: await s.listDesiredLrps(),
    actual: (await s.listActualLrps()).map((a) => [a.actualLrpKey, a.state, a.actualLrpInstanceKey, a.stopRequested, a.crashCount]),
    services: (await s.listServices()).map((x) => [x.id, x.kind, x.name, x.state, x.shutdown]),
    locks: (await s.queryLocks({}, undefined, Date.now())).entries.map((l) => [l.serviceInstanceId, l.owner, l.expiresAt]),
    cells: (await s.listCells()).map((c) => c.cellId),
  };
}

/**
 * One cell of the matrix: `expected` is 'ok' or a refusal; a refusal must leave the store as
 * it was. Refusals for not being the owner may use the interface's own conflict codes
 * (`notOwner` matches them), as an Arrowhead 423 or a BBS ResourceConflict.
 */
async function cell<T>(iface: string, op: string, caller: string, expected: Outcome | RegExp, prepare: () => Promise<T>, call: (target: T) => Promise<Outcome>): Promise<void> {
  const target = await prepare();
  const before = await settled();
  const outcome = await call(target);
  cells.push({ iface, op, caller, outcome });
  if (expected instanceof RegExp) assert.match(outcome, expected, `${iface} ${op} as ${caller}`);
  else assert.equal(outcome, expected, `${iface} ${op} as ${caller}`);
  if (outcome !== 'ok') {
    assert.deepEqual(await settled(), before, `${iface} ${op} as ${caller}: the store is unchanged after the refusal`);
  }
}

/** The four callers of one operation; `prepare` makes a fresh target for each. */
async function row<T>(
  iface: string,
  op: string,
  opts: { right: Who; wrong: Who[]; prepare: () => Promise<T>; call: (who: Who, target: T) => Promise<Outcome>; notOwner?: { caller: string; prepare: () => Promise<T>; call: (target: T) => Promise<Outcome>; expected: Outcome | RegExp } },
): Promise<void> {
  await cell(iface, op, 'no identity', 'unauthenticated', opts.prepare, (t) => opts.call('anonymous', t));
  for (const w of opts.wrong) await cell(iface, op, `wrong role (${w})`, 'forbidden', opts.prepare, (t) => opts.call(w, t));
  if (opts.notOwner) await cell(iface, op, opts.notOwner.caller, opts.notOwner.expected, opts.notOwner.prepare, opts.notOwner.call);
  await cell(iface, op, `right principal (${opts.right})`, 'ok', opts.prepare, (t) => opts.call(opts.right, t));
}

// ------------------------------------------------------------------------------ fixtures

let n = 0;
const fresh = (what: string) => `${what}-${RUN}-${++n}`;
const desiredLrp = (guid: string, instances = 1) => ({ process_guid: guid, domain: 'authz', instances, action: { run: { path: '/bin/sleep', args: ['300'] } } });
const ik = (guid: string, cellId = 'cell-a') => ({ instance_guid: `ig-${guid}`, cell_id: cellId });
const ak = (guid: string) => ({ process_guid: guid, index: 0, domain: 'authz' });

async function must(outcome: Promise<Outcome>): Promise<void> {
  assert.equal(await outcome, 'ok', 'fixture step');
}
/** LRPs made for the matrix; the cell tests remove theirs before the claims time out and move them. */
const lrpGuids: string[] = [];
async function desired(instances = 1): Promise<string> {
  const guid = fresh('lrp');
  lrpGuids.push(guid);
  await must(bbs('/v1/desired_lrp/desire', 'ops', { desired_lrp: desiredLrp(guid, instances) }));
  return guid;
}
async function lockedByBob(serviceInstanceId: string): Promise<void> {
  const r = await http('POST', `${LOCK_HTTP_BASE}/create`, 'bob', { locks: [lock(serviceInstanceId, 'bob', inHours(1))] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}
const lockedDesired = async () => {
  const guid = await desired();
  await lockedByBob(serviceInstanceIdOf({ domain: 'authz', processGuid: guid }));
  return guid;
};
async function claimed(state: 'CLAIMED' | 'RUNNING'): Promise<string> {
  const guid = await desired();
  await must(bbs('/v1/cells/heartbeat', 'cell', { cell: { cell_id: 'cell-a', ttl_ms: 3_600_000 } }));
  await must(bbs('/v1/actual_lrps/claim', 'cell', { process_guid: guid, index: 0, actual_lrp_instance_key: ik(guid) }));
  if (state === 'RUNNING') await must(bbs('/v1/actual_lrps/start', 'cell', { actual_lrp_key: ak(guid), actual_lrp_instance_key: ik(guid), actual_lrp_net_info: { address: '10.0.0.1' } }));
  return guid;
}
async function mservice(): Promise<string> {
  const r = await http('POST', `${MSERVICES}?domain=authz`, 'ops', { name: fresh('ms'), cmdline: 'sleep 300', enabled: false });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}
async function lockedMservice(): Promise<string> {
  const id = await mservice();
  const d = await drover.ctx.store.getDesiredLrp(id);
  assert.ok(d, 'an mservice is a desired LRP of the same id');
  await lockedByBob(serviceInstanceIdOf(d));
  return id;
}
async function allocated(owner: Who = 'alice'): Promise<string> {
  const slice = geniUrn('slice', fresh('s').replace(/-/g, ''));
  await must(geni(owner, 'Allocate', slice, (cred) => [slice, cred, rspec(['n1']), {}]));
  return slice;
}
async function provisioned(): Promise<string> {
  const slice = await allocated();
  await must(geni('alice', 'Provision', slice, (cred) => [[slice], cred, RSPEC_VERSION]));
  return slice;
}
async function shutDown(): Promise<string> {
  const slice = await provisioned();
  await must(geni('ops', 'Shutdown', slice, (cred) => [slice, cred, {}]));
  return slice;
}
function manoRequest(): Json {
  const vnfd = { descriptor_version: 'vnfd-schema-02', vendor: 'eu.drover.test', name: fresh('vnf'), version: '0.1', uuid: randomUUID(), virtual_deployment_units: [{ id: 'vdu01', drover: { path: '/usr/bin/sleep', args: [300], instances: 1 } }] };
  return {
    NSD: { descriptor_version: 'nsd-schema-02', vendor: 'eu.drover.test', name: fresh('ns'), version: '0.1', uuid: randomUUID(), network_functions: [{ vnf_id: 'vnf0', vnf_name: vnfd.name, vnf_vendor: vnfd.vendor, vnf_version: vnfd.version }] },
    VNFD0: vnfd,
  };
}
async function manoService(owner: Who = 'alice'): Promise<string> {
  const r = await mano(TOPIC_CREATE, owner, manoRequest());
  assert.equal(r.outcome, 'ok');
  return r.id!;
}

before(async () => {
  const auth = join(dir, 'auth.yaml');
  const entry = (name: Who, role: string, extra: Record<string, string[]> = {}) =>
    `  - ${JSON.stringify({ name, roles: [role], tokens: [TOKENS[name as keyof typeof TOKENS]], amqpAppIds: [`${name}-app`], geniUrns: [urnOf(name)], ...extra })}`;
  writeFileSync(
    auth,
    [
      'principals:',
      entry('ops', 'operator'),
      entry('alice', 'owner', { mqtt: [`IDENTITY-TOKEN//${MQTT_TOKENS.alice}`] }),
      entry('bob', 'owner', { mqtt: [`IDENTITY-TOKEN//${MQTT_TOKENS.bob}`] }),
      entry('cell', 'agent'),
      entry('viewer', 'reader', { mqtt: [`IDENTITY-TOKEN//${MQTT_TOKENS.viewer}`] }),
      '',
    ].join('\n'),
  );
  const store = `${PG_URL.replace('postgres@', `postgres:${PG_PASSWORD}@`)}?schema=${schema}`;
  const log = pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true }));
  drover = await startDrover(
    {
      dataDir: dir,
      store,
      auth,
      agent: false,
      http: '127.0.0.1:0',
      mqtt: 'embedded',
      mqttListen: '127.0.0.1:0',
      mqttTopicPrefix: `drover-authz-${RUN}`,
      amqp: AMQP_URL,
      amqpExchange: EXCHANGE,
      manoReadyTimeoutMs: 600_000,
      geni: '127.0.0.1:0',
      convergeIntervalMs: 200,
      logLevel: 'debug',
    },
    log,
  );
  pkiCa = drover.geni!.pki.caKeyPair!;
  certs.ops = drover.geni!.pki.operator!;
  for (const who of ['alice', 'bob', 'viewer', 'stranger'] as const) certs[who] = await issueUserCertificate(pkiCa, join(dir, 'users'), who, urnOf(who));
  mqttClient = await LockClient.connect(drover.mqtt!.brokerUrl, `drover-authz-${RUN}`);
  manoConn = await amqp.connect(AMQP_URL);
  manoCh = await manoConn.createChannel();
  await manoCh.assertExchange(EXCHANGE, 'topic', { durable: false, autoDelete: false });
  const { queue } = await manoCh.assertQueue('', { exclusive: true, autoDelete: true });
  for (const topic of [TOPIC_CREATE, TOPIC_TERMINATE]) await manoCh.bindQueue(queue, EXCHANGE, topic);
  await manoCh.consume(
    queue,
    (msg) => {
      const { appId, correlationId } = msg!.properties as { appId?: string; correlationId?: string };
      // the first answer of Drover's (our own requests come back on the same topic)
      if (appId === DEFAULT_APP_ID && correlationId && !manoReplies.has(correlationId)) manoReplies.set(correlationId, parse(msg!.content.toString()));
    },
    { noAck: true },
  );
  await drover.amqp!.ready();
});

after(async () => {
  await mqttClient?.close();
  await manoConn?.close().catch(() => {});
  await drover?.close();
  await dropSchema(schema);
  rmSync(dir, { recursive: true, force: true });
  const counts = new Map<string, number>();
  for (const c of cells) counts.set(c.iface, (counts.get(c.iface) ?? 0) + 1);
  console.log(`# authz-figures: ${cells.length} matrix cells ${JSON.stringify(Object.fromEntries(counts))}`);
});

// ------------------------------------------------------------------------------ the matrix

const owners = { right: 'alice' as Who, wrong: ['viewer', 'cell'] as Who[] };
const agents = { right: 'cell' as Who, wrong: ['viewer', 'alice'] as Who[] };
const operators = { right: 'ops' as Who, wrong: ['viewer', 'alice'] as Who[] };
const locked = /^refused: ResourceConflict$/;

describe('authorization matrix', () => {
  it('BBS: desired LRP writes need the owner role and an unlocked LRP', async () => {
    await row('BBS', 'desire', { ...owners, prepare: async () => fresh('lrp'), call: (who, guid) => bbs('/v1/desired_lrp/desire', who, { desired_lrp: desiredLrp(guid) }) });
    const notOwner = (call: (guid: string) => Promise<Outcome>) => ({ caller: 'owner, LRP locked by another', prepare: lockedDesired, call, expected: locked });
    const update = (who: Who, guid: string) => bbs('/v1/desired_lrp/update', who, { process_guid: guid, update: { instances: 2 } });
    await row('BBS', 'update', { ...owners, prepare: () => desired(), call: update, notOwner: notOwner((g) => update('alice', g)) });
    const remove = (who: Who, guid: string) => bbs('/v1/desired_lrp/remove', who, { process_guid: guid });
    await row('BBS', 'remove', { ...owners, prepare: () => desired(), call: remove, notOwner: notOwner((g) => remove('alice', g)) });
    const retire = (who: Who, guid: string) => bbs('/v1/actual_lrps/retire', who, { actual_lrp_key: ak(guid) });
    await row('BBS', 'retire', { ...owners, prepare: () => desired(), call: retire, notOwner: notOwner((g) => retire('alice', g)) });
  });

  it('BBS: cell writes need the agent role and the instance of that cell', async () => {
    const otherCell = { caller: 'agent, instance of another cell' };
    const claim = (who: Who, guid: string, cellId = 'cell-a') => bbs('/v1/actual_lrps/claim', who, { process_guid: guid, index: 0, actual_lrp_instance_key: ik(guid, cellId) });
    await row('BBS', 'claim', { ...agents, prepare: () => desired(), call: claim, notOwner: { ...otherCell, prepare: () => claimed('CLAIMED'), call: (g) => claim('cell', g, 'cell-b'), expected: /^refused: ActualLRPCannotBeClaimed$/ } });
    const start = (who: Who, guid: string, cellId = 'cell-a') => bbs('/v1/actual_lrps/start', who, { actual_lrp_key: ak(guid), actual_lrp_instance_key: ik(guid, cellId), actual_lrp_net_info: { address: '10.0.0.1' } });
    await row('BBS', 'start', { ...agents, prepare: () => claimed('CLAIMED'), call: start, notOwner: { ...otherCell, prepare: () => claimed('CLAIMED'), call: (g) => start('cell', g, 'cell-b'), expected: /^refused: / } });
    const crash = (who: Who, guid: string, cellId = 'cell-a') => bbs('/v1/actual_lrps/crash', who, { actual_lrp_key: ak(guid), actual_lrp_instance_key: ik(guid, cellId), error_message: 'boom' });
    await row('BBS', 'crash', { ...agents, prepare: () => claimed('RUNNING'), call: crash, notOwner: { ...otherCell, prepare: () => claimed('RUNNING'), call: (g) => crash('cell', g, 'cell-b'), expected: /^refused: / } });
    const remove = (who: Who, guid: string, cellId = 'cell-a') => bbs('/v1/actual_lrps/remove', who, { process_guid: guid, index: 0, actual_lrp_instance_key: ik(guid, cellId) });
    await row('BBS', 'remove actual', { ...agents, prepare: () => claimed('RUNNING'), call: remove, notOwner: { ...otherCell, prepare: () => claimed('RUNNING'), call: (g) => remove('cell', g, 'cell-b'), expected: /^refused: / } });
    await row('BBS', 'heartbeat', { ...agents, prepare: async () => fresh('cell'), call: (who, cellId) => bbs('/v1/cells/heartbeat', who, { cell: { cell_id: cellId, ttl_ms: 3_600_000 } }) });
    for (const guid of lrpGuids) {
      await bbs('/v1/desired_lrp/remove', 'ops', { process_guid: guid });
      await bbs('/v1/actual_lrps/remove', 'cell', { process_guid: guid, index: 0, actual_lrp_instance_key: ik(guid) });
    }
  });

  it('dashboard: enabling or disabling an LRP needs the owner role and an unlocked LRP', async () => {
    const toggle = async (who: Who, guid: string) => byStatus(await http('POST', `/ui/api/desired_lrps/${guid}/enabled`, who, { enabled: false, reason: 'authz' }));
    await row('dashboard', 'enabled', { ...owners, prepare: () => desired(), call: toggle, notOwner: { caller: 'owner, LRP locked by another', prepare: lockedDesired, call: (g) => toggle('alice', g), expected: /^refused: 4\d\d / } });
  });

  it('Era REST: mservice writes need the owner role and no lock of another', async () => {
    const notOwner = (call: (id: string) => Promise<Outcome>) => ({ caller: 'owner, mservice locked by another', prepare: lockedMservice, call, expected: /^refused: 423 / });
    const create = async (who: Who) => byStatus(await http('POST', `${MSERVICES}?domain=authz`, who, { name: fresh('ms'), cmdline: 'sleep 300', enabled: false }));
    await row('Era', 'create', { ...owners, prepare: async () => '', call: create });
    const put = async (who: Who, id: string) => byStatus(await http('PUT', `${MSERVICES}/${id}?domain=authz`, who, { name: `renamed-${id}`, cmdline: 'sleep 301', enabled: false }));
    await row('Era', 'replace', { ...owners, prepare: mservice, call: put, notOwner: notOwner((id) => put('alice', id)) });
    const patch = async (who: Who, id: string) => byStatus(await http('PATCH', `${MSERVICES}/${id}?domain=authz`, who, { cmdline: 'sleep 302' }));
    await row('Era', 'patch', { ...owners, prepare: mservice, call: patch, notOwner: notOwner((id) => patch('alice', id)) });
    const upload = async (who: Who, id: string) => byStatus(await http('POST', `${MSERVICES}/${id}/attachment?domain=authz`, who, serviceZip()));
    await row('Era', 'upload', { ...owners, prepare: mservice, call: upload, notOwner: notOwner((id) => upload('alice', id)) });
    const remove = async (who: Who, id: string) => byStatus(await http('DELETE', `${MSERVICES}/${id}?domain=authz`, who));
    await row('Era', 'delete', { ...owners, prepare: mservice, call: remove, notOwner: notOwner((id) => remove('alice', id)) });
  });

  it("Arrowhead locks over HTTP and MQTT: owners create and remove their own locks, not another's", async () => {
    const id = () => `Authz|${fresh('svc')}|1.0.0`;
    const httpCreate = async (who: Who, sid: string, owner = who) => byStatus(await http('POST', `${LOCK_HTTP_BASE}/create`, who, { locks: [lock(sid, owner, inHours(1))] }));
    await row('locks HTTP', 'create', { ...owners, prepare: async () => id(), call: httpCreate, notOwner: { caller: "owner, in another's name", prepare: async () => id(), call: (sid) => httpCreate('alice', sid, 'bob'), expected: 'forbidden' } });
    const heldBy = async (owner: Who) => {
      const sid = id();
      await lockedByBob(sid);
      if (owner === 'alice') assert.equal((await http('POST', `${LOCK_HTTP_BASE}/create`, 'alice', { locks: [lock(id(), 'alice', inHours(1))] })).status, 201);
      return sid;
    };
    const httpRemove = async (who: Who, sid: string, owner = who === 'anonymous' ? 'bob' : who) =>
      byStatus(await http('DELETE', `${LOCK_HTTP_BASE}/remove/${owner}?instanceIds=${encodeURIComponent(sid)}`, who));
    await row('locks HTTP', 'remove', { right: 'bob', wrong: ['viewer', 'cell'], prepare: () => heldBy('bob'), call: httpRemove, notOwner: { caller: "owner, a lock held by another", prepare: () => heldBy('bob'), call: (sid) => httpRemove('alice', sid, 'bob'), expected: 'forbidden' } });

    const mqttCreate = (who: Who, sid: string, owner = who) => mqttLock('create', who, { payload: { locks: [lock(sid, owner, inHours(1))] } });
    await row('locks MQTT', 'create', { right: 'alice', wrong: ['viewer'], prepare: async () => id(), call: mqttCreate, notOwner: { caller: "owner, in another's name", prepare: async () => id(), call: (sid) => mqttCreate('alice', sid, 'bob'), expected: 'forbidden' } });
    const mqttRemove = (who: Who, sid: string, owner = who === 'anonymous' ? 'bob' : who) => mqttLock('remove', who, { params: { owner }, payload: [sid] });
    await row('locks MQTT', 'remove', { right: 'bob', wrong: ['viewer'], prepare: () => heldBy('bob'), call: mqttRemove, notOwner: { caller: 'owner, a lock held by another', prepare: () => heldBy('bob'), call: (sid) => mqttRemove('alice', sid, 'bob'), expected: 'forbidden' } });
  });

  it('MANO over AMQP: owners instantiate; only the owner of a service terminates it', async () => {
    await row('MANO', 'instantiate', { ...owners, prepare: async () => manoRequest(), call: async (who, req) => (await mano(TOPIC_CREATE, who, req)).outcome });
    const terminate = async (who: Who, id: string) => (await mano(TOPIC_TERMINATE, who, { instance_id: id })).outcome;
    await row('MANO', 'terminate', { ...owners, prepare: () => manoService('alice'), call: terminate, notOwner: { caller: "owner, another's service", prepare: () => manoService('bob'), call: (id) => terminate('alice', id), expected: 'forbidden' } });
  });

  it('GENI AM API: slice writes need a known owner with a credential for its own slice; Shutdown needs an operator; a shut-down slice refuses its owner', async () => {
    // (Allocate makes a slice: there is no other owner yet)
    const writes: [string, () => Promise<string>, (cred: XmlRpcValue, slice: string) => XmlRpcValue[]][] = [
      ['Allocate', async () => geniUrn('slice', fresh('s').replace(/-/g, '')), (cred, slice) => [slice, cred, rspec(['n1']), {}]],
      ['Provision', () => allocated(), (cred, slice) => [[slice], cred, RSPEC_VERSION]],
      ['PerformOperationalAction', () => provisioned(), (cred, slice) => [[slice], cred, 'geni_start', {}]],
      ['Renew', () => provisioned(), (cred, slice) => [[slice], cred, new Date(Date.now() + 1_800_000).toISOString(), {}]],
      ['Delete', () => allocated(), (cred, slice) => [[slice], cred, {}]],
    ];
    for (const [method, prepare, params] of writes) {
      const call = (who: Who | 'stranger', slice: string) => geni(who, method, slice, (cred) => params(cred, slice));
      await row('GENI', method, { right: 'alice', wrong: ['viewer'], prepare, call, ...(method === 'Allocate' ? {} : { notOwner: { caller: "owner, another's slice", prepare, call: (slice: string) => call('bob', slice), expected: 'forbidden' as const } }) });
      await cell('GENI', method, 'unknown user (certificate of the CA, in no principal)', 'forbidden', prepare, (slice) => call('stranger', slice));
      if (method !== 'Allocate') await cell('GENI', method, 'owner, slice shut down', 'forbidden', shutDown, (slice) => call('alice', slice));
    }
    const shutdown = (who: Who, slice: string) => geni(who, 'Shutdown', slice, (cred) => [slice, cred, {}]);
    await row('GENI', 'Shutdown', { right: 'ops', wrong: ['viewer', 'alice'], prepare: () => provisioned(), call: shutdown });
  });

  it('operator service routes: restore and delete need the operator role', async () => {
    const restore = async (who: Who, slice: string) => byStatus(await http('POST', '/v1/services/restore', who, { kind: 'geni', name: slice }));
    await row('services', 'restore', { ...operators, prepare: shutDown, call: restore });
    const remove = async (who: Who, slice: string) => byStatus(await http('POST', '/v1/services/delete', who, { kind: 'geni', name: slice }));
    await row('services', 'delete', { ...operators, prepare: shutDown, call: remove });
  });

  it('no secret that went over the wire appears in the debug log', async () => {
    const log = readFileSync(logFile, 'utf8');
    assert.ok(log.split('\n').length > 20, 'the log has lines to check');
    // the private keys of this run: the CA's, the server's, the users'
    for (const pair of [pkiCa, drover.geni!.pki.server, ...Object.values(certs)]) {
      const body = pem(pair!.key).replace(/-----[^-]+-----|\s/g, '');
      wireSecrets.add(body.slice(20, 84));
    }
    assert.ok(wireSecrets.size > 10);
    for (const s of wireSecrets) assert.ok(!log.includes(s), `secret ${s.slice(0, 12)}… appears in the log`);
  });
});
