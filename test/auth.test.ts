// Bearer tokens and roles on the BBS API (`auth:` file given to startDrover), on SQLite.
// Refusals are HTTP 401 (no or unknown token) and 403 (missing role), each with a BBS
// Error body, and change nothing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { bbsProtoRoot, decodeMessage } from '../src/api/bbs/codec.js';
import { BBS_ERROR_TYPES, type BbsErrorType } from '../src/api/bbs/errors.js';
import { snapshot } from '../src/converge/loop.js';
import { plan } from '../src/converge/planner.js';
import { storeFixtures, tempDir, type StoreFixture } from './helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

const PB = 'application/x-protobuf';

const AUTH_YAML = `
principals:
  - name: ops
    roles: [operator]
    tokens: [op-token]
  - name: cloud-controller
    roles: [owner]
    tokens: [owner-token, owner-token-2]
  - name: cell-a
    roles: [agent]
    tokens: [agent-token]
  - name: dashboard
    roles: [reader]
    tokens: [reader-token]
`;

const TOKENS = { operator: 'op-token', owner: 'owner-token', agent: 'agent-token', reader: 'reader-token' } as const;

interface Reply {
  status: number;
  body: J;
}

const lrp = (processGuid: string, instances = 1) => ({
  process_guid: processGuid,
  domain: 'apps',
  instances,
  action: { run: { path: '/bin/sleep', args: ['3600'] } },
});
const key = (processGuid: string, index: number) => ({ process_guid: processGuid, index, domain: 'apps' });
const ik = (instanceGuid: string, cellId = 'cell-a') => ({ instance_guid: instanceGuid, cell_id: cellId });

describe('BBS API with an auth file', () => {
  let fixtures: StoreFixture[] = [];
  let dataDir = '';
  let drover: RunningDrover | undefined;

  async function post(path: string, body: J, token?: string): Promise<Reply> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const res = await fetch(drover!.url + path, { method: 'POST', headers, body: JSON.stringify(body) });
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    return { status: res.status, body: await res.json() };
  }

  const as = (token?: string) => ({
    listDesired: () => post('/v1/desired_lrps/list.r2', {}, token),
    getDesired: (guid: string) => post('/v1/desired_lrps/get_by_process_guid.r2', { process_guid: guid }, token),
    desire: (d: J) => post('/v1/desired_lrp/desire.r1', { desired_lrp: d }, token),
    update: (guid: string, update: J) => post('/v1/desired_lrp/update', { process_guid: guid, update }, token),
    removeDesired: (guid: string) => post('/v1/desired_lrp/remove', { process_guid: guid }, token),
    groups: () => post('/v1/actual_lrp_groups/list', {}, token),
    actuals: () => post('/v1/actual_lrps/list', {}, token),
    group: (guid: string, index: number) => post('/v1/actual_lrp_groups/get_by_process_guid_and_index', { process_guid: guid, index }, token),
    claim: (guid: string, index: number, instanceKey: J) => post('/v1/actual_lrps/claim', { process_guid: guid, index, actual_lrp_instance_key: instanceKey }, token),
    start: (guid: string, index: number, instanceKey: J) =>
      post('/v1/actual_lrps/start', { actual_lrp_key: key(guid, index), actual_lrp_instance_key: instanceKey, actual_lrp_net_info: { address: '10.0.0.9' } }, token),
    crash: (guid: string, index: number, instanceKey: J) =>
      post('/v1/actual_lrps/crash', { actual_lrp_key: key(guid, index), actual_lrp_instance_key: instanceKey, error_message: 'boom' }, token),
    removeActual: (guid: string, index: number, instanceKey: J) =>
      post('/v1/actual_lrps/remove', { process_guid: guid, index, actual_lrp_instance_key: instanceKey }, token),
    retire: (guid: string, index: number) => post('/v1/actual_lrps/retire', { actual_lrp_key: key(guid, index) }, token),
    heartbeat: (cellId: string) => post('/v1/cells/heartbeat', { cell: { cell_id: cellId, ttl_ms: 600_000 } }, token),
    cells: () => post('/v1/cells/list', {}, token),
  });

  const operator = as(TOKENS.operator);

  function ok(r: Reply): J {
    assert.equal(r.status, 200, `HTTP ${r.status}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error, undefined, JSON.stringify(r.body.error));
    return r.body;
  }

  function refusedWith(r: Reply, status: 401 | 403): void {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.ok(r.body.error, 'a BBS Error body');
    assert.ok(r.body.error.type in BBS_ERROR_TYPES, `a BBS error type: ${r.body.error.type}`);
    assert.equal(typeof r.body.error.message, 'string');
    assert.notEqual(r.body.error.message, '');
  }

  async function dump(): Promise<J> {
    return { desired: ok(await operator.listDesired()).desired_lrps, groups: ok(await operator.groups()).actual_lrp_groups };
  }

  /** Waits (bounded) until the convergence loop has nothing left to do, so the store holds still. */
  async function settle(): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (let quiet = 0; quiet < 3; ) {
      quiet = plan(await snapshot(drover!.ctx)).length === 0 ? quiet + 1 : 0;
      if (Date.now() > deadline) throw new Error('convergence did not settle');
      await sleep(20);
    }
  }

  /** The call is refused with `status` and changes nothing. */
  async function refused(call: () => Promise<Reply>, status: 401 | 403): Promise<Reply> {
    await settle();
    const before = await dump();
    const r = await call();
    refusedWith(r, status);
    assert.deepEqual(await dump(), before, 'the store is unchanged');
    return r;
  }

  before(async () => {
    fixtures = storeFixtures();
    dataDir = tempDir('drover-auth-');
    const authFile = join(dataDir, 'auth.yml');
    writeFileSync(authFile, AUTH_YAML);
    drover = await startDrover(
      {
        dataDir,
        store: fixtures.find((f) => f.name === 'sqlite')!.spec,
        http: '127.0.0.1:0',
        agent: false,
        logLevel: 'silent',
        auth: authFile,
      },
      pino({ level: 'silent' }),
    );
    // something to read and to act on
    ok(await operator.desire(lrp('seed', 2)));
  });

  after(async () => {
    await drover?.close();
    for (const f of fixtures) await f.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 401 with a BBS error body without a token', async () => {
    const anonymous = as(undefined);
    await refused(() => anonymous.listDesired(), 401);
    await refused(() => anonymous.groups(), 401);
    await refused(() => anonymous.cells(), 401);
    await refused(() => anonymous.desire(lrp('anon')), 401);
    await refused(() => anonymous.claim('seed', 0, ik('ig-anon')), 401);
    await refused(() => anonymous.retire('seed', 0), 401);
    // a header that is not a bearer token is no token either
    const res = await fetch(`${drover!.url}/v1/desired_lrps/list`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('ops:op-token').toString('base64')}` },
      body: '{}',
    });
    refusedWith({ status: res.status, body: await res.json() }, 401);
  });

  it('answers 401 for an unknown token', async () => {
    const stranger = as('not-a-token');
    await refused(() => stranger.listDesired(), 401);
    await refused(() => stranger.desire(lrp('stranger')), 401);
    await refused(() => stranger.claim('seed', 0, ik('ig-x')), 401);
    await refused(() => as('OP-TOKEN').listDesired(), 401);
  });

  it('answers 401 in protobuf to a protobuf request', async () => {
    const res = await fetch(`${drover!.url}/v1/desired_lrps/list.r2`, { method: 'POST', headers: { 'content-type': PB }, body: new Uint8Array(0) });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('content-type') ?? '', /^application\/x-protobuf/);
    const bytes = Buffer.from(await res.arrayBuffer());
    const decoded = decodeMessage<J>('models.DesiredLRPsResponse', bytes, PB);
    assert.ok(decoded.error.message);
    const raw = bbsProtoRoot().lookupType('models.DesiredLRPsResponse').decode(bytes) as J;
    assert.equal(raw.error.type, BBS_ERROR_TYPES[decoded.error.type as BbsErrorType]);
  });

  it('lets a reader list but not desire (403)', async () => {
    const reader = as(TOKENS.reader);
    assert.deepEqual(
      ok(await reader.listDesired()).desired_lrps.map((d: J) => d.process_guid),
      ['seed'],
    );
    assert.equal(ok(await reader.getDesired('seed')).desired_lrp.instances, 2);
    assert.equal(ok(await reader.groups()).actual_lrp_groups.length, 2);
    assert.equal(ok(await reader.actuals()).actual_lrps.length, 2);
    assert.equal(ok(await reader.group('seed', 1)).actual_lrp_group.instance.index, 1);
    ok(await reader.cells());
    const r = await refused(() => reader.desire(lrp('by-reader')), 403);
    assert.match(r.body.error.message, /owner/);
    await refused(() => reader.update('seed', { instances: 5 }), 403);
    await refused(() => reader.removeDesired('seed'), 403);
    await refused(() => reader.retire('seed', 0), 403);
    await refused(() => reader.claim('seed', 0, ik('ig-r')), 403);
    await refused(() => reader.heartbeat('cell-r'), 403);
  });

  it('lets an owner desire, update and remove, but not use the cell routes (403)', async () => {
    const owner = as(TOKENS.owner);
    ok(await owner.desire(lrp('owned', 1)));
    ok(await owner.update('owned', { instances: 2, annotation: 'by owner' }));
    assert.equal(ok(await owner.getDesired('owned')).desired_lrp.annotation, 'by owner');
    assert.equal(ok(await as('owner-token-2').listDesired()).desired_lrps.length, 2, 'any of its tokens');
    const r = await refused(() => owner.claim('owned', 0, ik('ig-o')), 403);
    assert.match(r.body.error.message, /agent/);
    await refused(() => owner.start('owned', 0, ik('ig-o')), 403);
    await refused(() => owner.heartbeat('cell-o'), 403);
    await refused(() => owner.removeActual('owned', 0, ik('ig-o')), 403);
    ok(await owner.retire('owned', 1));
    ok(await owner.removeDesired('owned'));
    assert.equal((await owner.getDesired('owned')).body.error.type, 'ResourceNotFound');
  });

  it('lets an agent heartbeat, claim, start, crash and remove, but not desire (403)', async () => {
    const agent = as(TOKENS.agent);
    ok(await agent.heartbeat('cell-a'));
    ok(await agent.claim('seed', 0, ik('ig-1')));
    ok(await agent.start('seed', 0, ik('ig-1')));
    assert.equal(ok(await agent.group('seed', 0)).actual_lrp_group.instance.state, 'RUNNING');
    ok(await agent.crash('seed', 0, ik('ig-1')));
    assert.equal(ok(await agent.group('seed', 0)).actual_lrp_group.instance.crash_count, 1);
    await refused(() => agent.desire(lrp('by-agent')), 403);
    await refused(() => agent.update('seed', { instances: 0 }), 403);
    await refused(() => agent.removeDesired('seed'), 403);
    await refused(() => agent.retire('seed', 1), 403);
  });

  it('lets an operator do everything', async () => {
    ok(await operator.desire(lrp('ops-app', 1)));
    ok(await operator.update('ops-app', { instances: 2 }));
    ok(await operator.heartbeat('cell-ops'));
    assert.ok(ok(await operator.cells()).cells.some((c: J) => c.cell_id === 'cell-ops'));
    ok(await operator.claim('ops-app', 0, ik('ig-ops', 'cell-ops')));
    ok(await operator.start('ops-app', 0, ik('ig-ops', 'cell-ops')));
    ok(await operator.retire('ops-app', 0));
    assert.equal(ok(await operator.group('ops-app', 0)).actual_lrp_group.instance.stop_requested, true);
    ok(await operator.removeActual('ops-app', 0, ik('ig-ops', 'cell-ops')));
    ok(await operator.removeDesired('ops-app'));
    assert.equal((await operator.getDesired('ops-app')).body.error.type, 'ResourceNotFound');
  });

  it('guards the event stream too', async () => {
    for (const token of [undefined, 'not-a-token']) {
      const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
      const res = await fetch(`${drover!.url}/v1/events?format=json`, { headers });
      refusedWith({ status: res.status, body: await res.json() }, 401);
    }
    for (const token of Object.values(TOKENS)) {
      const abort = new AbortController();
      const res = await fetch(`${drover!.url}/v1/events?format=json`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
      assert.equal(res.status, 200, `${token} may read events`);
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
      abort.abort();
    }
  });
});
