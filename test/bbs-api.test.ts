// The BBS LRP API end to end: Drover started in-process on each store (SQLite, PostgreSQL),
// spoken to over real HTTP in each encoding (BBS JSON with snake_case bodies, protobuf).
//
// Requests are written once, as the snake_case JSON a BBS client sends. The protobuf
// suites turn them into protobuf with the codec (JSON -> message -> protobufjs bytes) and
// turn protobuf answers back into BBS JSON, so one set of assertions serves both; the
// error enum NUMBER of protobuf answers is read with protobufjs directly.
//
// agent: false, so nothing runs; the convergence loop still runs and places UNCLAIMED
// instances on the fake cell the suite heartbeats. Wherever convergence is involved the
// tests wait (bounded) until the planner has nothing left to do.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { bbsProtoRoot, decodeMessage, encodeMessage } from '../src/api/bbs/codec.js';
import { BBS_ERROR_TYPES, type BbsErrorType } from '../src/api/bbs/errors.js';
import { snapshot } from '../src/converge/loop.js';
import { plan } from '../src/converge/planner.js';
import { storeFixtures, tempDir, type StoreFixture } from './helpers.js';
import { SseStream, type SseEvent } from './sse.js';

type Enc = 'json' | 'protobuf';
// BBS JSON as it travels: any shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

const PB = 'application/x-protobuf';
const JSON_CT = 'application/json';
const CELL = 'cell-a';
const CELL_TTL_MS = 600_000; // the fake cell must stay alive for the whole suite

// ------------------------------------------------------------------------ HTTP client

interface Reply {
  status: number;
  contentType: string;
  /** the answer as BBS JSON (protobuf answers are converted) */
  body: J;
  /** protobuf answers: the raw `error.type` enum number */
  errorNumber?: number;
}

class BbsClient {
  constructor(
    readonly url: string,
    readonly enc: Enc,
  ) {}

  get contentType(): string {
    return this.enc === 'json' ? JSON_CT : PB;
  }

  /** The request body in this client's encoding, from the snake_case JSON a BBS client sends. */
  encode(requestType: string | undefined, req: J): Buffer {
    if (this.enc === 'json') return Buffer.from(JSON.stringify(req ?? {}));
    if (!requestType) return Buffer.alloc(0);
    const message = decodeMessage(requestType, Buffer.from(JSON.stringify(req ?? {})), JSON_CT);
    return encodeMessage(requestType, message, PB).body;
  }

  decode(responseType: string, bytes: Buffer, contentType: string): { body: J; errorNumber?: number } {
    if (contentType.startsWith(PB)) {
      const raw = bbsProtoRoot().lookupType(responseType).decode(bytes) as J;
      const message = decodeMessage(responseType, bytes, PB);
      const body = JSON.parse(encodeMessage(responseType, message, JSON_CT).body.toString('utf8'));
      return { body, errorNumber: raw.error ? raw.error.type : undefined };
    }
    return { body: JSON.parse(bytes.toString('utf8')) };
  }

  async send(path: string, body: Buffer | string, responseType: string, contentType = this.contentType): Promise<Reply> {
    const payload = typeof body === 'string' ? body : new Uint8Array(body); // ArrayBuffer-backed for fetch
    const res = await fetch(this.url + path, { method: 'POST', headers: { 'content-type': contentType }, body: payload });
    const bytes = Buffer.from(await res.arrayBuffer());
    const ct = res.headers.get('content-type') ?? '';
    return { status: res.status, contentType: ct, ...this.decode(responseType, bytes, ct) };
  }

  async call(path: string, requestType: string | undefined, req: J, responseType: string): Promise<Reply> {
    const r = await this.send(path, this.encode(requestType, req), responseType);
    assert.equal(r.contentType.split(';')[0], this.contentType, `${path} answers in the encoding of the request`);
    return r;
  }
}

const key = (processGuid: string, index: number, domain = 'apps') => ({ process_guid: processGuid, index, domain });
const ik = (instanceGuid: string, cellId = CELL) => ({ instance_guid: instanceGuid, cell_id: cellId });
const NET_INFO = {
  address: '10.0.0.5',
  ports: [{ container_port: 8080, host_port: 61001 }],
  instance_address: '10.255.0.5',
  preferred_address: 'HOST',
};

/** The BBS routes, each taking and giving BBS JSON. */
class Api {
  constructor(readonly client: BbsClient) {}

  ping = () => this.client.call('/v1/ping', undefined, {}, 'models.PingResponse');
  desire = (desiredLrp: J, path = '/v1/desired_lrp/desire.r1') =>
    this.client.call(path, 'models.DesireLRPRequest', { desired_lrp: desiredLrp }, 'models.DesiredLRPLifecycleResponse');
  listDesired = (req: J = {}, path = '/v1/desired_lrps/list.r2') => this.client.call(path, 'models.DesiredLRPsRequest', req, 'models.DesiredLRPsResponse');
  getDesired = (processGuid: string, path = '/v1/desired_lrps/get_by_process_guid.r2') =>
    this.client.call(path, 'models.DesiredLRPByProcessGuidRequest', { process_guid: processGuid }, 'models.DesiredLRPResponse');
  schedulingInfos = (req: J = {}) =>
    this.client.call('/v1/desired_lrp_scheduling_infos/list', 'models.DesiredLRPsRequest', req, 'models.DesiredLRPSchedulingInfosResponse');
  update = (processGuid: string, update: J, tag?: J) =>
    this.client.call(
      '/v1/desired_lrp/update',
      'models.UpdateDesiredLRPRequest',
      { process_guid: processGuid, update, ...(tag ? { modification_tag: tag } : {}) },
      'models.DesiredLRPLifecycleResponse',
    );
  removeDesired = (processGuid: string) =>
    this.client.call('/v1/desired_lrp/remove', 'models.RemoveDesiredLRPRequest', { process_guid: processGuid }, 'models.DesiredLRPLifecycleResponse');
  groups = (req: J = {}) => this.client.call('/v1/actual_lrp_groups/list', 'models.ActualLRPGroupsRequest', req, 'models.ActualLRPGroupsResponse');
  groupsByGuid = (processGuid: string) =>
    this.client.call(
      '/v1/actual_lrp_groups/list_by_process_guid',
      'models.ActualLRPGroupsByProcessGuidRequest',
      { process_guid: processGuid },
      'models.ActualLRPGroupsResponse',
    );
  group = (processGuid: string, index: number) =>
    this.client.call(
      '/v1/actual_lrp_groups/get_by_process_guid_and_index',
      'models.ActualLRPGroupByProcessGuidAndIndexRequest',
      { process_guid: processGuid, index },
      'models.ActualLRPGroupResponse',
    );
  actuals = (req: J = {}) => this.client.call('/v1/actual_lrps/list', 'models.ActualLRPsRequest', req, 'models.ActualLRPsResponse');
  claim = (processGuid: string, index: number, instanceKey: J, tag?: J) =>
    this.lifecycle('claim', 'models.ClaimActualLRPRequest', { process_guid: processGuid, index, actual_lrp_instance_key: instanceKey }, tag);
  start = (actualKey: J, instanceKey: J, netInfo: J = NET_INFO, tag?: J) =>
    this.lifecycle('start', 'models.StartActualLRPRequest', { actual_lrp_key: actualKey, actual_lrp_instance_key: instanceKey, actual_lrp_net_info: netInfo }, tag);
  crash = (actualKey: J, instanceKey: J, errorMessage: string, tag?: J) =>
    this.lifecycle('crash', 'models.CrashActualLRPRequest', { actual_lrp_key: actualKey, actual_lrp_instance_key: instanceKey, error_message: errorMessage }, tag);
  fail = (actualKey: J, errorMessage: string, tag?: J) =>
    this.lifecycle('fail', 'models.FailActualLRPRequest', { actual_lrp_key: actualKey, error_message: errorMessage }, tag);
  removeActual = (processGuid: string, index: number, instanceKey: J, tag?: J) =>
    this.lifecycle('remove', 'models.RemoveActualLRPRequest', { process_guid: processGuid, index, actual_lrp_instance_key: instanceKey }, tag);
  retire = (actualKey: J, tag?: J) => this.lifecycle('retire', 'models.RetireActualLRPRequest', { actual_lrp_key: actualKey }, tag);
  heartbeat = (cell: J) => this.client.call('/v1/cells/heartbeat', 'models.CellHeartbeatRequest', { cell }, 'models.CellHeartbeatResponse');
  cells = () => this.client.call('/v1/cells/list', undefined, {}, 'models.CellsResponse');

  private lifecycle(route: string, requestType: string, req: J, tag?: J) {
    return this.client.call(`/v1/actual_lrps/${route}`, requestType, tag ? { ...req, modification_tag: tag } : req, 'models.ActualLRPLifecycleResponse');
  }

  /** The instance at process_guid/index, or undefined if there is none. */
  async actual(processGuid: string, index: number): Promise<J | undefined> {
    const r = await this.group(processGuid, index);
    if (r.body.error?.type === 'ResourceNotFound') return undefined;
    return ok(r).actual_lrp_group.instance;
  }

  async desired(processGuid: string): Promise<J> {
    return ok(await this.getDesired(processGuid)).desired_lrp;
  }

  /** Everything the BBS reports about LRPs: to prove a refused request changed nothing. */
  async dump(): Promise<J> {
    return { desired: ok(await this.listDesired()).desired_lrps, groups: ok(await this.groups()).actual_lrp_groups };
  }

  /** Claim and start an instance on CELL. */
  async run(processGuid: string, index: number, instanceGuid: string, domain = 'apps'): Promise<J> {
    ok(await this.claim(processGuid, index, ik(instanceGuid)));
    ok(await this.start(key(processGuid, index, domain), ik(instanceGuid)));
    const a = await this.actual(processGuid, index);
    assert.equal(a.state, 'RUNNING');
    return a;
  }
}

/** A successful answer: HTTP 200 and no `error`. */
function ok(r: Reply): J {
  assert.equal(r.status, 200, `HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error, undefined, `unexpected BBS error ${JSON.stringify(r.body.error)}`);
  return r.body;
}

/** A BBS error answer: the type by name (JSON) and by enum number (protobuf). */
function expectError(r: Reply, types: BbsErrorType | BbsErrorType[], message?: RegExp, status = 200): void {
  const allowed = Array.isArray(types) ? types : [types];
  assert.equal(r.status, status, `HTTP status (body ${JSON.stringify(r.body)})`);
  assert.ok(r.body.error, `expected a BBS error ${allowed.join('|')}, got ${JSON.stringify(r.body)}`);
  assert.ok(allowed.includes(r.body.error.type), `error type ${r.body.error.type} (${r.body.error.message}), expected ${allowed.join('|')}`);
  if (r.contentType.startsWith(PB)) {
    assert.equal(r.errorNumber, BBS_ERROR_TYPES[r.body.error.type as BbsErrorType], 'the protobuf enum number');
  }
  assert.equal(typeof r.body.error.message, 'string');
  if (message) assert.match(r.body.error.message, message);
}

// ------------------------------------------------------------------------ waiting

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits until the convergence planner has nothing left to do (and stays so briefly). */
async function settle(drover: RunningDrover, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  for (;;) {
    const actions = plan(await snapshot(drover.ctx));
    quiet = actions.length === 0 ? quiet + 1 : 0;
    if (quiet >= 3) return;
    if (Date.now() > deadline) throw new Error(`convergence did not settle: ${JSON.stringify(actions)}`);
    await sleep(20);
  }
}

const EVENT_TYPES: Record<string, string> = {
  desired_lrp_created: 'models.DesiredLRPCreatedEvent',
  desired_lrp_changed: 'models.DesiredLRPChangedEvent',
  desired_lrp_removed: 'models.DesiredLRPRemovedEvent',
  actual_lrp_created: 'models.ActualLRPCreatedEvent',
  actual_lrp_changed: 'models.ActualLRPChangedEvent',
  actual_lrp_removed: 'models.ActualLRPRemovedEvent',
  actual_lrp_crashed: 'models.ActualLRPCrashedEvent',
  actual_lrp_instance_created: 'models.ActualLRPInstanceCreatedEvent',
  actual_lrp_instance_changed: 'models.ActualLRPInstanceChangedEvent',
  actual_lrp_instance_removed: 'models.ActualLRPInstanceRemovedEvent',
};

/** An event's data as BBS JSON: parsed (?format=json) or base64 protobuf decoded with the codec. */
function eventBody(e: SseEvent, enc: Enc): J {
  const type = EVENT_TYPES[e.event];
  assert.ok(type, `known event name ${e.event}`);
  if (enc === 'json') return JSON.parse(e.data);
  assert.match(e.data, /^[A-Za-z0-9+/]*={0,2}$/, 'protobuf event data is base64');
  const message = decodeMessage(type, Buffer.from(e.data, 'base64'), PB);
  return JSON.parse(encodeMessage(type, message, JSON_CT).body.toString('utf8'));
}

/** The process guid an event is about. */
function eventGuid(b: J): string | undefined {
  return (
    b.desired_lrp?.process_guid ??
    b.actual_lrp_group?.instance?.process_guid ??
    b.actual_lrp?.process_guid ??
    b.after?.instance?.process_guid ??
    b.after?.process_guid ??
    b.process_guid
  );
}

// ------------------------------------------------------------------------ fixtures

function lrp(processGuid: string, o: { domain?: string; instances?: number; routes?: J; annotation?: string } = {}): J {
  return {
    process_guid: processGuid,
    domain: o.domain ?? 'apps',
    rootfs: 'preloaded:cflinuxfs4',
    instances: o.instances ?? 1,
    env: [{ name: 'PORT', value: '8080' }],
    action: { run: { path: '/bin/sleep', args: ['3600'], dir: '/tmp', user: 'vcap' } },
    memory_mb: 64,
    disk_mb: 128,
    ports: [8080],
    routes: o.routes ?? { 'cf-router': [{ hostnames: [`${processGuid}.example.com`], port: 8080 }] },
    annotation: o.annotation ?? 'v1',
    log_guid: processGuid,
  };
}

const FAKE_CELL = {
  cell_id: CELL,
  rep_address: 'http://10.0.0.1:1800',
  zone: 'z1',
  capacity: { memory_mb: 4096, disk_mb: 8192, containers: 50 },
  ttl_ms: CELL_TTL_MS,
};

async function startOn(spec: string, dataDir: string): Promise<RunningDrover> {
  return startDrover({ dataDir, store: spec, http: '127.0.0.1:0', agent: false, logLevel: 'silent' }, pino({ level: 'silent' }));
}

// ------------------------------------------------------------------------ the suites

for (const storeKind of ['sqlite', 'postgres'] as const) {
  for (const enc of ['json', 'protobuf'] as const) {
    describe(`BBS API on ${storeKind} over ${enc}`, () => {
      let fixtures: StoreFixture[] = [];
      let dataDir = '';
      let drover: RunningDrover | undefined;
      let api: Api;
      const settled = () => settle(drover!);

      /** The request is refused with `type` and neither desired nor actual LRPs change. */
      async function refused(request: () => Promise<Reply>, types: BbsErrorType | BbsErrorType[], message?: RegExp, status = 200): Promise<Reply> {
        await settled();
        const before = await api.dump();
        const r = await request();
        expectError(r, types, message, status);
        assert.deepEqual(await api.dump(), before, 'the store is unchanged');
        return r;
      }

      before(async () => {
        fixtures = storeFixtures();
        dataDir = tempDir('drover-bbs-api-');
        drover = await startOn(fixtures.find((f) => f.name === storeKind)!.spec, dataDir);
        api = new Api(new BbsClient(drover.url, enc));
      });

      after(async () => {
        await drover?.close();
        for (const f of fixtures) await f.cleanup();
        rmSync(dataDir, { recursive: true, force: true });
      });

      it('answers ping', async () => {
        assert.deepEqual(ok(await api.ping()), { available: true });
      });

      it('registers a cell by heartbeat and lists it', async () => {
        const hb = ok(await api.heartbeat(FAKE_CELL)).cell;
        assert.equal(hb.cell_id, CELL);
        assert.equal(hb.rep_address, FAKE_CELL.rep_address);
        assert.equal(hb.ttl_ms, CELL_TTL_MS);
        assert.ok(hb.heartbeat_at > 0, 'the control plane stamps the heartbeat');
        // a bare heartbeat keeps what the cell said before
        const again = ok(await api.heartbeat({ cell_id: CELL })).cell;
        assert.equal(again.rep_address, FAKE_CELL.rep_address);
        assert.equal(again.ttl_ms, CELL_TTL_MS);
        assert.ok(again.heartbeat_at >= hb.heartbeat_at);

        const cells = ok(await api.cells()).cells;
        assert.deepEqual(cells, [
          {
            cell_id: CELL,
            rep_address: FAKE_CELL.rep_address,
            zone: 'z1',
            capacity: { memory_mb: 4096, disk_mb: 8192, containers: 50 },
            rootfs_providers: [],
            placement_tags: [],
          },
        ]);
        expectError(await api.heartbeat({ zone: 'z1' }), 'InvalidRequest', /cell_id/);
        assert.equal(ok(await api.cells()).cells.length, 1);
      });

      it('desires LRPs on desire.r1, desire and desire.r2', async () => {
        assert.deepEqual(ok(await api.desire(lrp('web', { instances: 2 }), '/v1/desired_lrp/desire.r1')), {});
        ok(await api.desire(lrp('worker'), '/v1/desired_lrp/desire'));
        ok(await api.desire(lrp('batch', { domain: 'jobs', instances: 0 }), '/v1/desired_lrp/desire.r2'));
        // the instances are created with the desired LRP, UNCLAIMED
        const web = ok(await api.groupsByGuid('web')).actual_lrp_groups.map((g: J) => g.instance);
        assert.deepEqual(
          web.map((a: J) => [a.process_guid, a.index, a.domain, a.state, a.crash_count]),
          [
            ['web', 0, 'apps', 'UNCLAIMED', 0],
            ['web', 1, 'apps', 'UNCLAIMED', 0],
          ],
        );
        for (const a of web) {
          assert.ok(a.modification_tag.epoch, 'an instance has a modification tag epoch');
          assert.ok(a.since > 1e18, 'since is unix nanoseconds');
        }
        assert.equal(ok(await api.groupsByGuid('worker')).actual_lrp_groups.length, 1);
        assert.deepEqual(ok(await api.groupsByGuid('batch')).actual_lrp_groups, []);
      });

      it('lists desired LRPs on list, list.r1 and list.r2 with domain and process_guids filters', async () => {
        for (const path of ['/v1/desired_lrps/list', '/v1/desired_lrps/list.r1', '/v1/desired_lrps/list.r2']) {
          const guids = async (req: J) => ok(await api.listDesired(req, path)).desired_lrps.map((d: J) => d.process_guid);
          assert.deepEqual(await guids({}), ['batch', 'web', 'worker'], path);
          assert.deepEqual(await guids({ domain: 'apps' }), ['web', 'worker'], path);
          assert.deepEqual(await guids({ domain: 'jobs' }), ['batch'], path);
          assert.deepEqual(await guids({ process_guids: ['web', 'batch'] }), ['batch', 'web'], path);
          assert.deepEqual(await guids({ domain: 'jobs', process_guids: ['web'] }), [], path);
          assert.deepEqual(await guids({ domain: 'nope' }), [], path);
        }
        const web = ok(await api.listDesired({ process_guids: ['web'] })).desired_lrps[0];
        const sent = lrp('web', { instances: 2 });
        for (const field of ['process_guid', 'domain', 'rootfs', 'instances', 'env', 'memory_mb', 'disk_mb', 'ports', 'routes', 'annotation', 'log_guid']) {
          assert.deepEqual(web[field], sent[field], field);
        }
        assert.equal(web.action.run.path, '/bin/sleep');
        assert.deepEqual(web.action.run.args, ['3600']);
        assert.ok(web.modification_tag.epoch);
        assert.equal(web.modification_tag.index, 0);
      });

      it('gets a desired LRP by process guid on every alias', async () => {
        const listed = ok(await api.listDesired({ process_guids: ['web'] })).desired_lrps[0];
        for (const path of ['/v1/desired_lrps/get_by_process_guid', '/v1/desired_lrps/get_by_process_guid.r1', '/v1/desired_lrps/get_by_process_guid.r2']) {
          assert.deepEqual(ok(await api.getDesired('web', path)).desired_lrp, listed, path);
        }
      });

      it('lists scheduling infos (flattened key and resource) with filters', async () => {
        const infos = ok(await api.schedulingInfos({ domain: 'apps' })).desired_lrp_scheduling_infos;
        assert.deepEqual(
          infos.map((i: J) => i.process_guid),
          ['web', 'worker'],
        );
        const web = infos[0];
        assert.equal(web.domain, 'apps');
        assert.equal(web.log_guid, 'web');
        assert.equal(web.instances, 2);
        assert.equal(web.memory_mb, 64);
        assert.equal(web.disk_mb, 128);
        assert.equal(web.rootfs, 'preloaded:cflinuxfs4');
        assert.equal(web.annotation, 'v1');
        assert.deepEqual(web.routes, lrp('web').routes);
        assert.equal(web.modification_tag.index, 0);
        assert.equal(web.action, undefined, 'a scheduling info carries no actions');
        const batch = ok(await api.schedulingInfos({ process_guids: ['batch'] })).desired_lrp_scheduling_infos;
        assert.deepEqual(
          batch.map((i: J) => [i.process_guid, i.domain, i.instances]),
          [['batch', 'jobs', 0]],
        );
      });

      it('places the instances on the live cell; lists groups and instances with filters', async () => {
        await waitFor('placement on the fake cell', async () => {
          const all = ok(await api.actuals()).actual_lrps;
          return all.length === 3 && all.every((a: J) => a.target_cell_id === CELL);
        });
        await settled();
        const all = ok(await api.groups()).actual_lrp_groups.map((g: J) => g.instance);
        const ids = (list: J[]) => list.map((a: J) => `${a.process_guid}/${a.index}`);
        assert.deepEqual(ids(all), ['web/0', 'web/1', 'worker/0']);
        const groupIds = async (req: J) => ids(ok(await api.groups(req)).actual_lrp_groups.map((g: J) => g.instance));
        assert.deepEqual(await groupIds({ domain: 'apps' }), ['web/0', 'web/1', 'worker/0']);
        assert.deepEqual(await groupIds({ domain: 'jobs' }), []);
        // as in BBS, the cell filter is the instance key's cell: placed but unclaimed is on none yet
        assert.deepEqual(await groupIds({ cell_id: CELL }), []);
        assert.deepEqual(await groupIds({ cell_id: 'no-such-cell' }), []);
        assert.deepEqual(await groupIds({ domain: 'apps', cell_id: 'no-such-cell' }), []);

        const g = ok(await api.group('web', 1)).actual_lrp_group;
        assert.equal(g.evacuating, undefined);
        assert.deepEqual(g.instance, all[1]);

        const actualIds = async (req: J) => ids(ok(await api.actuals(req)).actual_lrps);
        assert.deepEqual(await actualIds({}), ['web/0', 'web/1', 'worker/0']);
        assert.deepEqual(await actualIds({ process_guid: 'web' }), ['web/0', 'web/1']);
        assert.deepEqual(await actualIds({ process_guid: 'web', index: 1 }), ['web/1']);
        assert.deepEqual(await actualIds({ process_guid: 'web', index: 0 }), ['web/0']);
        assert.deepEqual(await actualIds({ domain: 'apps', cell_id: CELL }), []);
        // Drover: include_targeted adds the instances placed on the cell (what its agent asks)
        assert.deepEqual(await actualIds({ domain: 'apps', cell_id: CELL, include_targeted: true }), ['web/0', 'web/1', 'worker/0']);
        assert.deepEqual(await actualIds({ domain: 'jobs' }), []);
        assert.deepEqual(ok(await api.actuals({ process_guid: 'web', index: 1 })).actual_lrps[0], all[1], 'flattened ActualLRP');
      });

      it('claims, starts, crashes (immediate restart on the same cell), claims and starts again', async () => {
        const a0 = await api.actual('web', 0);
        const tag0 = a0.modification_tag;

        ok(await api.claim('web', 0, ik('ig-1')));
        let a = await api.actual('web', 0);
        assert.equal(a.state, 'CLAIMED');
        assert.equal(a.cell_id, CELL);
        assert.equal(a.instance_guid, 'ig-1');
        assert.deepEqual(a.modification_tag, { epoch: tag0.epoch, index: tag0.index + 1 });
        // the same claim again is a no-op
        ok(await api.claim('web', 0, ik('ig-1')));
        assert.deepEqual((await api.actual('web', 0)).modification_tag, a.modification_tag);

        ok(await api.start(key('web', 0), ik('ig-1')));
        a = await api.actual('web', 0);
        assert.equal(a.state, 'RUNNING');
        assert.equal(a.address, '10.0.0.5');
        assert.equal(a.instance_address, '10.255.0.5');
        assert.equal(a.preferred_address, 'HOST');
        assert.deepEqual(a.ports, [{ container_port: 8080, host_port: 61001, container_tls_proxy_port: 0, host_tls_proxy_port: 0 }]);
        assert.equal(a.modification_tag.index, tag0.index + 2);

        ok(await api.crash(key('web', 0), ik('ig-1'), 'exit status 2'));
        a = await api.actual('web', 0);
        assert.equal(a.state, 'UNCLAIMED', 'the first crashes restart at once');
        assert.equal(a.crash_count, 1);
        assert.equal(a.crash_reason, 'exit status 2');
        assert.equal(a.cell_id, '');
        assert.equal(a.instance_guid, '');
        assert.equal(a.address, '');
        assert.equal(a.target_cell_id, CELL, 'restarted where it ran');
        assert.equal(a.modification_tag.index, tag0.index + 3);

        ok(await api.claim('web', 0, ik('ig-2')));
        assert.equal((await api.actual('web', 0)).state, 'CLAIMED');
        ok(await api.start(key('web', 0), ik('ig-2')));
        a = await api.actual('web', 0);
        assert.equal(a.state, 'RUNNING');
        assert.equal(a.instance_guid, 'ig-2');
        assert.equal(a.crash_count, 1);
        assert.equal(a.modification_tag.epoch, tag0.epoch);
        assert.equal(a.modification_tag.index, tag0.index + 5);
        await settled();
        assert.deepEqual(await api.actual('web', 0), a, 'convergence leaves a running instance alone');
      });

      it('fails placement: the instance stays UNCLAIMED with placement_error', async () => {
        const before = await api.actual('web', 1);
        assert.equal(before.state, 'UNCLAIMED');
        ok(await api.fail(key('web', 1), 'insufficient resources: memory'));
        const a = await api.actual('web', 1);
        assert.equal(a.state, 'UNCLAIMED');
        assert.equal(a.placement_error, 'insufficient resources: memory');
        assert.equal(a.modification_tag.index, before.modification_tag.index + 1);
      });

      it('removes an instance only for the cell that owns it', async () => {
        const unclaimed = await api.actual('web', 1);
        assert.equal(unclaimed.state, 'UNCLAIMED');
        await refused(() => api.removeActual('web', 1, ik('ig-other', 'cell-b')), 'ActualLRPCannotBeRemoved');
        assert.deepEqual(await api.actual('web', 1), unclaimed, 'a refused remove leaves the instance as it was');
        const before = await api.actual('web', 0);
        assert.equal(before.state, 'RUNNING');
        await refused(() => api.removeActual('web', 0, ik('ig-other', 'cell-b')), 'ActualLRPCannotBeRemoved');
        ok(await api.removeActual('web', 0, ik('ig-2')));
        // gone; convergence then creates a fresh one (a new record: a new epoch)
        const now = await api.actual('web', 0);
        assert.ok(now === undefined || now.modification_tag.epoch !== before.modification_tag.epoch, 'the instance was removed');
        const fresh = await waitFor('web/0 to be replaced', async () => {
          const a = await api.actual('web', 0);
          return a && a.target_cell_id === CELL ? a : undefined;
        });
        assert.equal(fresh.state, 'UNCLAIMED');
        assert.equal(fresh.crash_count, 0);
        assert.notEqual(fresh.modification_tag.epoch, before.modification_tag.epoch);
      });

      it('retires: an UNCLAIMED instance goes at once, a RUNNING one is asked to stop', async () => {
        await settled();
        const worker = await api.actual('worker', 0);
        assert.equal(worker.state, 'UNCLAIMED');
        ok(await api.retire(key('worker', 0)));
        const after = await api.actual('worker', 0);
        assert.ok(after === undefined || after.modification_tag.epoch !== worker.modification_tag.epoch, 'the UNCLAIMED instance was deleted');
        await waitFor('worker/0 to be replaced', async () => (await api.actual('worker', 0))?.target_cell_id === CELL);

        await settled();
        const running = await api.run('web', 0, 'ig-3');
        ok(await api.retire(key('web', 0)));
        const stopping = await api.actual('web', 0);
        assert.equal(stopping.state, 'RUNNING', 'the cell stops it');
        assert.equal(stopping.stop_requested, true);
        assert.equal(stopping.modification_tag.index, running.modification_tag.index + 1);
        // retiring again changes nothing
        ok(await api.retire(key('web', 0)));
        assert.deepEqual(await api.actual('web', 0), stopping);
        await settled();
        assert.deepEqual(await api.actual('web', 0), stopping, 'convergence waits for the cell');
        // the cell stopped it and removes it; convergence replaces it
        ok(await api.removeActual('web', 0, ik('ig-3')));
        const fresh = await waitFor('web/0 to be replaced', async () => {
          const a = await api.actual('web', 0);
          return a && a.modification_tag.epoch !== stopping.modification_tag.epoch ? a : undefined;
        });
        assert.equal(fresh.stop_requested, false);
      });

      it('updates: scale up, scale down, routes and annotation', async () => {
        ok(await api.desire(lrp('scale', { instances: 1 })));
        await settled();
        const first = await api.actual('scale', 0);

        ok(await api.update('scale', { instances: 3 }));
        let d = await api.desired('scale');
        assert.equal(d.instances, 3);
        assert.equal(d.modification_tag.index, 1);
        const scaled = ok(await api.groupsByGuid('scale')).actual_lrp_groups.map((g: J) => g.instance);
        assert.deepEqual(
          scaled.map((a: J) => [a.index, a.state]),
          [
            [0, first.state],
            [1, 'UNCLAIMED'],
            [2, 'UNCLAIMED'],
          ],
        );
        assert.deepEqual(scaled[0], first, 'scaling up leaves existing instances alone');
        await settled();
        await api.run('scale', 1, 'ig-s1');
        const keep = await api.actual('scale', 0);

        ok(await api.update('scale', { instances: 1 }));
        d = await api.desired('scale');
        assert.equal(d.instances, 1);
        assert.equal(d.modification_tag.index, 2);
        assert.deepEqual(await api.actual('scale', 0), keep, 'index 0 untouched');
        const stopping = await api.actual('scale', 1);
        assert.equal(stopping.state, 'RUNNING');
        assert.equal(stopping.stop_requested, true, 'a running extra instance is asked to stop');
        assert.equal(await api.actual('scale', 2), undefined, 'an unstarted extra instance goes at once');

        const routes = { 'cf-router': [{ hostnames: ['scale.example.org', 'www.example.org'], port: 9090 }], 'tcp-router': [{ external_port: 5000, container_port: 9090 }] };
        ok(await api.update('scale', { routes, annotation: 'v2' }));
        d = await api.desired('scale');
        assert.deepEqual(d.routes, routes);
        assert.equal(d.annotation, 'v2');
        assert.equal(d.instances, 1, 'instances untouched');
        ok(await api.update('scale', { annotation: 'v3' }));
        d = await api.desired('scale');
        assert.equal(d.annotation, 'v3');
        assert.deepEqual(d.routes, routes, 'routes untouched when not in the update');
        assert.equal(d.modification_tag.index, 4);
        const info = ok(await api.schedulingInfos({ process_guids: ['scale'] })).desired_lrp_scheduling_infos[0];
        assert.equal(info.annotation, 'v3');
        assert.deepEqual(info.routes, routes);

        // the cell finishes stopping the extra instance
        ok(await api.removeActual('scale', 1, ik('ig-s1')));
        await settled();
        assert.deepEqual(
          ok(await api.groupsByGuid('scale')).actual_lrp_groups.map((g: J) => g.instance.index),
          [0],
        );
      });

      it('removes desired LRPs: unstarted instances go, running ones are asked to stop', async () => {
        ok(await api.removeDesired('batch'));
        expectError(await api.getDesired('batch'), 'ResourceNotFound');

        await api.run('scale', 0, 'ig-s0');
        ok(await api.removeDesired('scale'));
        expectError(await api.getDesired('scale'), 'ResourceNotFound');
        assert.ok(!ok(await api.listDesired()).desired_lrps.some((x: J) => x.process_guid === 'scale'));
        const stopping = await api.actual('scale', 0);
        assert.equal(stopping.stop_requested, true);
        await settled();
        ok(await api.removeActual('scale', 0, ik('ig-s0')));
        await settled();
        assert.deepEqual(ok(await api.groupsByGuid('scale')).actual_lrp_groups, [], 'not replaced: no longer desired');
      });

      it(`streams events (${enc === 'json' ? '?format=json' : 'base64 protobuf'}) and resumes after Last-Event-ID`, async () => {
        await settled();
        const url = `${drover!.url}/v1/events${enc === 'json' ? '?format=json' : ''}`;
        const stream = await SseStream.open(url);
        let desiredCreated: SseEvent;
        let actualCreated: SseEvent;
        try {
          ok(await api.desire(lrp('sse-app', { instances: 1 })));
          const seen = await stream.until((e) => e.event === 'actual_lrp_created' && eventGuid(eventBody(e, enc)) === 'sse-app');
          for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.id > seen[i - 1]!.id, 'ids increase');
          const mine = seen.filter((e) => eventGuid(eventBody(e, enc)) === 'sse-app');
          assert.deepEqual(
            mine.map((e) => e.event),
            ['desired_lrp_created', 'actual_lrp_created'],
          );
          [desiredCreated, actualCreated] = mine as [SseEvent, SseEvent];
          const d = eventBody(desiredCreated, enc).desired_lrp;
          assert.equal(d.domain, 'apps');
          assert.equal(d.instances, 1);
          assert.deepEqual(d.routes, lrp('sse-app').routes);
          const a = eventBody(actualCreated, enc).actual_lrp_group.instance;
          assert.deepEqual([a.process_guid, a.index, a.state], ['sse-app', 0, 'UNCLAIMED']);

          // a change event follows (placement on the cell), with before and after
          const changed = (await stream.until((e) => e.event === 'actual_lrp_changed' && eventGuid(eventBody(e, enc)) === 'sse-app')).at(-1)!;
          const body = eventBody(changed, enc);
          assert.equal(body.before.instance.target_cell_id, '');
          assert.equal(body.after.instance.target_cell_id, CELL);
          assert.equal(body.after.instance.modification_tag.index, body.before.instance.modification_tag.index + 1);
        } finally {
          stream.close();
        }

        // resuming after the desired_lrp_created event gives only the later ones
        const resumed = await SseStream.open(url, { 'last-event-id': String(desiredCreated.id) });
        try {
          const first = await resumed.next();
          assert.equal(first.id, actualCreated.id);
          assert.equal(first.event, 'actual_lrp_created');
          assert.deepEqual(eventBody(first, enc), eventBody(actualCreated, enc));
          const rest = await resumed.until((e) => e.event === 'actual_lrp_changed' && eventGuid(eventBody(e, enc)) === 'sse-app');
          assert.ok(rest.every((e) => e.id > actualCreated.id));
        } finally {
          resumed.close();
        }
        // the protobuf form of the same event decodes with the codec whatever this suite speaks
        const pbStream = await SseStream.open(`${drover!.url}/v1/events`, { 'last-event-id': String(desiredCreated.id - 1) });
        try {
          const e = await pbStream.next();
          assert.equal(e.id, desiredCreated.id);
          assert.equal(e.event, 'desired_lrp_created');
          const message = decodeMessage<J>('models.DesiredLRPCreatedEvent', Buffer.from(e.data, 'base64'), PB);
          assert.equal(message.desiredLrp.processGuid, 'sse-app');
          assert.equal(message.desiredLrp.instances, 1);
        } finally {
          pbStream.close();
        }
        await settled();
      });

      it('streams instance events on /v1/events/lrp_instances with the instance key', async () => {
        await settled();
        const stream = await SseStream.open(`${drover!.url}/v1/events/lrp_instances${enc === 'json' ? '?format=json' : ''}`);
        try {
          ok(await api.claim('sse-app', 0, ik('ig-sse')));
          const e = (await stream.until((x) => x.event === 'actual_lrp_instance_changed' && eventBody(x, enc).after?.state === 'CLAIMED')).at(-1)!;
          const body = eventBody(e, enc);
          assert.equal(body.before.state, 'UNCLAIMED');
          assert.deepEqual(
            [body.process_guid, body.index, body.domain, body.instance_guid, body.cell_id],
            ['sse-app', 0, 'apps', 'ig-sse', CELL],
            'the changed event names its instance (key and instance key)',
          );
          // started, so no claim timeout can move it under later tests
          ok(await api.start(key('sse-app', 0), ik('ig-sse')));
        } finally {
          stream.close();
        }
      });

      // ---------------------------------------------------------------- bad input

      if (enc === 'json') {
        it('refuses malformed JSON as InvalidJSON', async () => {
          await refused(() => api.client.send('/v1/desired_lrp/desire.r1', '{"desired_lrp": {"process_guid": ', 'models.DesiredLRPLifecycleResponse'), 'InvalidJSON');
          await refused(() => api.client.send('/v1/actual_lrps/claim', '{not json}', 'models.ActualLRPLifecycleResponse'), 'InvalidJSON');
        });

        it('refuses JSON of the wrong shape as InvalidRequest', async () => {
          await refused(() => api.client.send('/v1/desired_lrp/desire.r1', '[1, 2]', 'models.DesiredLRPLifecycleResponse'), 'InvalidRequest');
          await refused(() => api.desire({ ...lrp('typed'), instances: 'three' }), 'InvalidRequest', /instances/);
        });
      } else {
        it('refuses garbage protobuf as InvalidProtobufMessage', async () => {
          const garbage = Buffer.from('0aff01deadbeef', 'hex'); // field 1, length 255, then 4 bytes
          await refused(() => api.client.send('/v1/desired_lrp/desire.r1', garbage, 'models.DesiredLRPLifecycleResponse'), 'InvalidProtobufMessage');
          await refused(() => api.client.send('/v1/actual_lrps/claim', Buffer.from([0xff, 0xff, 0xff]), 'models.ActualLRPLifecycleResponse'), 'InvalidProtobufMessage');
        });
      }

      it('refuses a desired LRP without process_guid or domain, with negative instances or a bad guid', async () => {
        const { process_guid: _omitGuid, ...noGuid } = lrp('x');
        await refused(() => api.desire(noGuid), 'InvalidRequest', /process_guid/);
        const { domain: _omitDomain, ...noDomain } = lrp('no-domain');
        await refused(() => api.desire(noDomain), 'InvalidRequest', /domain/);
        await refused(() => api.desire(lrp('negative', { instances: -1 })), 'InvalidRequest', /instances/);
        await refused(() => api.desire(lrp('bad guid!')), 'InvalidRequest', /process_guid/);
        await refused(() => api.desire(lrp('bad/guid')), 'InvalidRequest', /process_guid/);
        await refused(() => api.update('web', { instances: -2 }), 'InvalidRequest', /instances/);
        await refused(() => api.getDesired(''), 'InvalidRequest', /process_guid/);
        await refused(() => api.groupsByGuid(''), 'InvalidRequest', /process_guid/);
        await refused(() => api.claim('', 0, ik('ig-x')), 'InvalidRequest', /process_guid/);
      });

      it('answers ResourceNotFound for unknown guids on get, update, remove and retire', async () => {
        await refused(() => api.getDesired('no-such-lrp'), 'ResourceNotFound');
        await refused(() => api.update('no-such-lrp', { instances: 3 }), 'ResourceNotFound');
        await refused(() => api.removeDesired('no-such-lrp'), 'ResourceNotFound');
        await refused(() => api.retire(key('no-such-lrp', 0)), 'ResourceNotFound');
        await refused(() => api.group('no-such-lrp', 0), 'ResourceNotFound');
        await refused(() => api.group('web', 99), 'ResourceNotFound');
        await refused(() => api.claim('no-such-lrp', 0, ik('ig-x')), 'ResourceNotFound');
      });

      it('answers ResourceExists for a duplicate desire', async () => {
        await refused(() => api.desire(lrp('web', { instances: 5 })), 'ResourceExists');
        await refused(() => api.desire(lrp('web'), '/v1/desired_lrp/desire'), 'ResourceExists');
      });

      it('refuses illegal transitions', async () => {
        // a CRASHED instance: the fourth crash in a row waits out a back-off
        ok(await api.desire(lrp('crashy')));
        await settled();
        for (let n = 1; n <= 4; n++) {
          await api.run('crashy', 0, `ig-c${n}`);
          ok(await api.crash(key('crashy', 0), ik(`ig-c${n}`), `crash ${n}`));
        }
        const crashed = await api.actual('crashy', 0);
        assert.equal(crashed.state, 'CRASHED');
        assert.equal(crashed.crash_count, 4);
        // BBS itself answers ActualLRPCannotBeStarted / ActualLRPCannotBeClaimed here
        await refused(() => api.start(key('crashy', 0), ik('ig-c5')), ['ActualLRPCannotBeStarted', 'InvalidStateTransition']);
        await refused(() => api.claim('crashy', 0, ik('ig-c5')), ['ActualLRPCannotBeClaimed', 'InvalidStateTransition']);
        await refused(() => api.crash(key('crashy', 0), ik('ig-c4'), 'again'), 'ActualLRPCannotBeCrashed');
        // gone before its back-off ends, so no restart can move the store under later tests
        ok(await api.removeDesired('crashy'));
        assert.equal(await api.actual('crashy', 0), undefined, 'a CRASHED instance is deleted at once');

        // worker/0 claimed by cell-a
        ok(await api.claim('worker', 0, ik('ig-w')));
        await refused(() => api.claim('worker', 0, ik('ig-b', 'cell-b')), 'ActualLRPCannotBeClaimed');
        await refused(() => api.start(key('worker', 0), ik('ig-b', 'cell-b')), ['RunningOnDifferentCell', 'ActualLRPCannotBeStarted']);
        await refused(() => api.crash(key('worker', 0), ik('ig-b', 'cell-b'), 'not mine'), 'ActualLRPCannotBeCrashed');
        await refused(() => api.removeActual('worker', 0, ik('ig-b', 'cell-b')), 'ActualLRPCannotBeRemoved');
        // web/1 is UNCLAIMED
        assert.equal((await api.actual('web', 1)).state, 'UNCLAIMED');
        await refused(() => api.crash(key('web', 1), ik('ig-u'), 'never ran'), 'ActualLRPCannotBeCrashed');
        // fail is for UNCLAIMED instances only
        await refused(() => api.fail(key('worker', 0), 'no room'), 'ActualLRPCannotBeFailed');
        // a started instance on another cell
        ok(await api.start(key('worker', 0), ik('ig-w')));
        await refused(() => api.start(key('worker', 0), ik('ig-b', 'cell-b')), ['RunningOnDifferentCell', 'ActualLRPCannotBeStarted']);
        await refused(() => api.claim('worker', 0, ik('ig-b', 'cell-b')), 'ActualLRPCannotBeClaimed');
        await refused(() => api.claim('worker', 0, { instance_guid: '', cell_id: '' }), 'InvalidRequest', /instance_guid/);
      });

      it('refuses a stale modification tag (Drover extension) as ResourceConflict', async () => {
        await settled();
        const worker = await api.actual('worker', 0); // RUNNING on cell-a as ig-w
        const web1 = await api.actual('web', 1); // UNCLAIMED
        const stale = (a: J) => ({ epoch: a.modification_tag.epoch, index: a.modification_tag.index + 7 });
        const older = (a: J) => ({ epoch: a.modification_tag.epoch, index: a.modification_tag.index - 1 });
        await refused(() => api.claim('web', 1, ik('ig-t'), stale(web1)), 'ResourceConflict', /modified/);
        await refused(() => api.claim('web', 1, ik('ig-t'), older(web1)), 'ResourceConflict');
        await refused(() => api.start(key('worker', 0), ik('ig-w'), NET_INFO, older(worker)), 'ResourceConflict');
        await refused(() => api.crash(key('worker', 0), ik('ig-w'), 'boom', older(worker)), 'ResourceConflict');
        await refused(() => api.fail(key('web', 1), 'no room', stale(web1)), 'ResourceConflict');
        await refused(() => api.removeActual('worker', 0, ik('ig-w'), older(worker)), 'ResourceConflict');
        await refused(() => api.retire(key('worker', 0), older(worker)), 'ResourceConflict');
        const web = await api.desired('web');
        await refused(() => api.update('web', { instances: 3 }, { epoch: web.modification_tag.epoch, index: web.modification_tag.index + 1 }), 'ResourceConflict');

        // the current tag is accepted
        ok(await api.start(key('worker', 0), ik('ig-w'), { ...NET_INFO, address: '10.0.0.6' }, worker.modification_tag));
        assert.equal((await api.actual('worker', 0)).address, '10.0.0.6');
        ok(await api.update('web', { annotation: 'tagged' }, web.modification_tag));
        assert.equal((await api.desired('web')).annotation, 'tagged');
      });

      it('answers a 10 MB body with HTTP 413 and a BBS error', async () => {
        await settled();
        const before = await api.dump();
        const big = enc === 'json' ? Buffer.from(JSON.stringify({ desired_lrp: { ...lrp('huge'), annotation: 'x'.repeat(10 * 1024 * 1024) } })) : Buffer.alloc(10 * 1024 * 1024, 0x0a);
        const r = await api.client.send('/v1/desired_lrp/desire.r1', big, 'models.DesiredLRPLifecycleResponse');
        expectError(r, ['InvalidRequest', 'UnknownError'], undefined, 413);
        assert.equal(r.contentType.split(';')[0], api.client.contentType);
        assert.deepEqual(await api.dump(), before, 'the store is unchanged');
      });

      it('is still up and serving after all of that', async () => {
        assert.deepEqual(ok(await api.ping()), { available: true });
        assert.ok(ok(await api.listDesired()).desired_lrps.length >= 3);
      });
    });
  }
}

describe('restarting Drover on the same SQLite file', () => {
  it('keeps the desired LRPs and their instances', async () => {
    const fixtures = storeFixtures();
    const spec = fixtures.find((f) => f.name === 'sqlite')!.spec;
    const dataDir = tempDir('drover-bbs-restart-');
    let drover: RunningDrover | undefined;
    try {
      drover = await startOn(spec, dataDir);
      let api = new Api(new BbsClient(drover.url, 'json'));
      ok(await api.heartbeat(FAKE_CELL));
      ok(await api.desire(lrp('keep-a', { instances: 2 })));
      ok(await api.desire(lrp('keep-b', { domain: 'other', instances: 1 })));
      await waitFor('placement', async () => ok(await api.actuals()).actual_lrps.every((a: J) => a.target_cell_id === CELL));
      await settle(drover);
      await api.run('keep-a', 0, 'ig-keep');
      ok(await api.update('keep-a', { annotation: 'before restart' }));
      await settle(drover);
      const before = await api.dump();
      assert.equal(before.desired.length, 2);
      assert.equal(before.groups.length, 3);
      await drover.close();
      drover = undefined;

      drover = await startOn(spec, dataDir);
      api = new Api(new BbsClient(drover.url, 'json'));
      await settle(drover);
      assert.deepEqual(await api.dump(), before);
      const a = await api.actual('keep-a', 0);
      assert.deepEqual([a.state, a.cell_id, a.instance_guid], ['RUNNING', CELL, 'ig-keep']);
      assert.equal((await api.desired('keep-a')).annotation, 'before restart');
      expectError(await api.desire(lrp('keep-a')), 'ResourceExists');
      // and it carries on: the running instance can still be driven
      ok(await api.crash(key('keep-a', 0), ik('ig-keep'), 'after restart'));
      assert.equal((await api.actual('keep-a', 0)).crash_count, 1);
    } finally {
      await drover?.close();
      for (const f of fixtures) await f.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
