// The GENI AM API v3 end to end: Drover runs in-process with its embedded agent, the GENI
// interface on real HTTPS with client certificates from Drover's own CA, and the test is
// an experimenter tool (Node https + XML-RPC, and Python's xmlrpc.client). Slivers run
// real processes, each marked in its environment so /proc tells which exist.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inflateSync } from 'node:zlib';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { ensurePki, issueUserCertificate, type KeyPairFiles } from '../src/pki/ca.js';
import { issueCredential } from '../src/pki/credential.js';
import { geniUrn, OPERATOR_URN } from '../src/pki/urn.js';
import { postXml, xmlRpcCall, type XmlRpcTarget } from '../src/api/xmlrpc/client.js';
import { FAULT, XmlRpcFault, decodeResponse, encodeCall, type XmlRpcStruct, type XmlRpcValue } from '../src/api/xmlrpc/codec.js';
import { GENI } from '../src/api/xmlrpc/geni.js';
import { findServices, serviceStatus, SHUTDOWN_SNAPSHOT } from '../src/core/services.js';
import { updateDesiredLrp } from '../src/core/desired-lrps.js';
import { createLocks, removeLocks } from '../src/core/locks.js';
import type { Principal } from '../src/model/principal.js';
import { packagePath } from '../src/package-root.js';
import { processesWithEnv, tempDir, waitFor } from './helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const RUN = randomBytes(4).toString('hex');
const MARK = 'DROVER_GENI_TEST';
const CELL = `geni-${RUN}`;
const dir = tempDir('drover-geni-');
const ALICE = geniUrn('user', 'alice');
const BOB = geniUrn('user', 'bob');
const OPS: Principal = { name: 'ops', roles: ['operator'] };
const AGENT_TOKEN = `agent-${RUN}`;
const OPS_TOKEN = `ops-${RUN}`;
const ALICE_TOKEN = `alice-${RUN}`;
const RSPEC_VERSION = { geni_rspec_version: { type: 'GENI', version: '3' } };

let drover: RunningDrover;
let ca: KeyPairFiles;
const certs: Record<string, KeyPairFiles> = {};
let sliceCount = 0;

const pem = (file: string) => readFileSync(file, 'utf8');
const target = (who: string): XmlRpcTarget => ({ url: drover.geni!.url, ca: pem(ca.cert), cert: pem(certs[who]!.cert), key: pem(certs[who]!.key) });
const signer = () => ({ cert: pem(ca.cert), key: pem(ca.key) });

function credential(user: string, slice: string, opts: { expires?: number; privileges?: string[]; by?: { cert: string; key: string } } = {}) {
  const xml = issueCredential({ ownerUrn: user, targetUrn: slice, expires: opts.expires ?? Date.now() + 3_600_000, privileges: opts.privileges ?? ['*'] }, opts.by ?? signer());
  return [{ geni_type: 'geni_sfa', geni_version: '3', geni_value: xml }];
}

const urnOfUser = (who: string) => (who === 'operator' ? OPERATOR_URN : geniUrn('user', who));

/** Calls as `who` with a credential for `slice` (the first URN-ish argument names it). */
async function call(who: string, method: string, ...params: XmlRpcValue[]): Promise<Any> {
  return xmlRpcCall(target(who), method, params);
}

function ok(r: Any): Any {
  assert.equal(r.code.geni_code, 0, `expected success, got ${r.code.geni_code}: ${r.output}`);
  assert.equal(r.code.am_type, 'drover');
  return r.value;
}

function refused(r: Any, code: number, output?: RegExp): void {
  assert.equal(r.code.geni_code, code, `expected code ${code}, got ${r.code.geni_code}: ${r.output}`);
  if (output) assert.match(r.output, output);
}

function newSlice(): string {
  return geniUrn('slice', `s${RUN.slice(0, 6)}-${++sliceCount}`);
}

/** A request RSpec: each node runs `sleep 300` marked `mark-<client id>`, via <execute> or <drover:process>. */
function rspec(mark: string, nodes: { id: string; kind: 'execute' | 'process'; script?: string }[]): string {
  const attr = (v: string) => v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
  const body = nodes.map(({ id, kind, script }) => {
    const tag = `${mark}-${id}`;
    const run =
      kind === 'execute'
        ? `<services><execute shell="sh" command="${attr(`echo started ${tag}; ${MARK}=${tag} exec ${script ?? 'sleep 300'}`)}"/></services>`
        : `<drover:process path="/usr/bin/sleep"><drover:arg>300</drover:arg><drover:env name="${MARK}" value="${tag}"/></drover:process>`;
    return `<node client_id="${id}" exclusive="false"><sliver_type name="drover-process"/>${run}</node>`;
  });
  return `<?xml version="1.0"?><rspec type="request" xmlns="http://www.geni.net/resources/rspec/3" xmlns:drover="urn:drover:rspec:process:1">${body.join('')}</rspec>`;
}

const running = (tag: string) => processesWithEnv(MARK, tag);
const waitProcesses = (tag: string, n: number) => waitFor(() => (running(tag).length === n ? true : undefined), `${n} processes marked ${tag}`, 15_000);

/** Allocates `slice` for alice and returns the sliver URNs (in node order). */
async function allocate(slice: string, nodes: Parameters<typeof rspec>[1], options: XmlRpcStruct = {}): Promise<string[]> {
  const v = ok(await call('alice', 'Allocate', slice, credential(ALICE, slice), rspec(slice.split('+').at(-1)!, nodes), options));
  return v.geni_slivers.map((s: Any) => s.geni_sliver_urn);
}

async function provisionAndStart(slice: string): Promise<void> {
  ok(await call('alice', 'Provision', [slice], credential(ALICE, slice), RSPEC_VERSION));
  ok(await call('alice', 'PerformOperationalAction', [slice], credential(ALICE, slice), 'geni_start', {}));
}

async function statusOf(slice: string, who = 'alice', user = ALICE): Promise<Any[]> {
  return ok(await call(who, 'Status', [slice], credential(user, slice), {})).geni_slivers;
}

const waitOperational = (slice: string, state: string) =>
  waitFor(async () => {
    const slivers = await statusOf(slice);
    return slivers.every((s) => s.geni_operational_status === state) ? slivers : undefined;
  }, `slice ${slice} ${state}`, 15_000);

/** Runs the `drover` command; rejects with its stderr when it fails. */
const cli = (...args: string[]) =>
  new Promise<string>((resolve, reject) =>
    execFile(packagePath('bin', 'drover'), args, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );

const sliceService = async (slice: string) => (await findServices(drover.ctx, OPS, 'geni', slice)).at(-1)!;

before(async () => {
  const auth = join(dir, 'auth.yaml');
  writeFileSync(
    auth,
    [
      'principals:',
      `  - { name: ops, roles: [operator], geniUrns: ["${OPERATOR_URN}"], tokens: [${OPS_TOKEN}] }`,
      `  - { name: alice, roles: [owner], geniUrns: ["${ALICE}"], tokens: [${ALICE_TOKEN}] }`,
      `  - { name: bob, roles: [owner], geniUrns: ["${BOB}"] }`,
      `  - { name: cell, roles: [agent], tokens: [${AGENT_TOKEN}] }`,
      '',
    ].join('\n'),
  );
  drover = await startDrover({ dataDir: dir, auth, agent: true, agentToken: AGENT_TOKEN, cellId: CELL, http: '127.0.0.1:0', geni: '127.0.0.1:0', logLevel: 'silent', mqtt: 'none', convergeIntervalMs: 200 });
  ca = drover.geni!.pki.caKeyPair!;
  certs.operator = drover.geni!.pki.operator!;
  for (const who of ['alice', 'bob']) certs[who] = await issueUserCertificate(ca, join(dir, 'users'), who, urnOfUser(who));
});

after(async () => {
  await drover?.agent?.stopAll();
  await drover?.close();
  for (const pid of processesWithEnv(MARK, `s${RUN.slice(0, 6)}`, true)) process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('GENI AM API v3 over HTTPS with client certificates', () => {
  it('GetVersion and ListResources (plain and compressed) describe this aggregate', async () => {
    const version = await call('alice', 'GetVersion', {});
    assert.equal(version.geni_api, 3);
    const v = ok(version);
    assert.equal(v.geni_api, 3);
    assert.equal(v.geni_api_versions['3'], drover.geni!.url);
    assert.deepEqual(v.geni_credential_types, [{ geni_type: 'geni_sfa', geni_version: '3' }]);
    assert.equal(v.geni_request_rspec_versions[0].type, 'GENI');

    const slice = newSlice();
    const ad = ok(await call('alice', 'ListResources', credential(ALICE, slice), RSPEC_VERSION));
    assert.match(ad, /<rspec [^>]*type="advertisement"/);
    assert.match(ad, new RegExp(`component_name="${CELL}"`));
    const packed = ok(await call('alice', 'ListResources', credential(ALICE, slice), { ...RSPEC_VERSION, geni_compressed: true }));
    assert.equal(inflateSync(Buffer.from(packed, 'base64')).toString(), ad);
    refused(await call('alice', 'ListResources', credential(ALICE, slice), {}), GENI.BADARGS, /geni_rspec_version/);
    refused(await call('alice', 'ListResources', credential(ALICE, slice), { geni_rspec_version: { type: 'ProtoGENI', version: '2' } }), GENI.BADVERSION);
  });

  it('runs the whole cycle: Allocate → Describe → Provision → geni_start → ready with real processes → Renew → stop/restart → Delete', async () => {
    const slice = newSlice();
    const mark = slice.split('+').at(-1)!;
    const cred = credential(ALICE, slice);
    const [web, worker] = await allocate(slice, [
      { id: 'web', kind: 'execute' },
      { id: 'worker', kind: 'process' },
    ]);
    assert.match(web!, /^urn:publicid:IDN\+drover\+sliver\+[0-9a-f]{16}$/);
    let slivers = await statusOf(slice);
    assert.deepEqual(
      slivers.map((s) => [s.geni_allocation_status, s.geni_operational_status]),
      [
        ['geni_allocated', 'geni_pending_allocation'],
        ['geni_allocated', 'geni_pending_allocation'],
      ],
    );
    const described = ok(await call('alice', 'Describe', [slice], cred, RSPEC_VERSION));
    assert.equal(described.geni_urn, slice);
    assert.match(described.geni_rspec, /type="manifest"/);
    assert.match(described.geni_rspec, new RegExp(`client_id="web"[^>]*sliver_id="${web!.replace(/\+/g, '\\+')}"`));
    assert.match(described.geni_rspec, /<drover:process path="\/usr\/bin\/sleep"/);
    // nothing runs before geni_start
    assert.deepEqual(running(`${mark}-web`), []);

    const provisioned = ok(await call('alice', 'Provision', [slice], cred, RSPEC_VERSION));
    assert.deepEqual(
      provisioned.geni_slivers.map((s: Any) => [s.geni_allocation_status, s.geni_operational_status]),
      [
        ['geni_provisioned', 'geni_notready'],
        ['geni_provisioned', 'geni_notready'],
      ],
    );
    ok(await call('alice', 'PerformOperationalAction', [slice], cred, 'geni_start', {}));
    slivers = await waitOperational(slice, 'geni_ready');
    await waitProcesses(`${mark}-web`, 1);
    await waitProcesses(`${mark}-worker`, 1);

    // Renew moves geni_expires
    const until = new Date(Date.now() + 30 * 60_000);
    until.setUTCMilliseconds(0);
    const renewed = ok(await call('alice', 'Renew', [slice], cred, until.toISOString(), {}));
    assert.deepEqual(
      renewed.map((s: Any) => Date.parse(s.geni_expires)),
      [until.getTime(), until.getTime()],
    );

    // one sliver by its URN: stop, then start and restart (a new process)
    ok(await call('alice', 'PerformOperationalAction', [worker!], cred, 'geni_stop', {}));
    await waitProcesses(`${mark}-worker`, 0);
    // The process is gone a moment before the agent has removed its instance: geni_stopping
    // until then, and nothing else.
    const workerStatus = async () => (await statusOf(slice)).find((s) => s.geni_sliver_urn === worker)!.geni_operational_status;
    let status = await workerStatus();
    for (let i = 0; status === 'geni_stopping' && i < 100; i++) {
      await sleep(50);
      status = await workerStatus();
    }
    assert.equal(status, 'geni_notready');
    assert.equal(running(`${mark}-web`).length, 1, 'the other sliver runs on');
    ok(await call('alice', 'PerformOperationalAction', [worker!], cred, 'geni_start', {}));
    await waitProcesses(`${mark}-worker`, 1);
    const [before] = running(`${mark}-worker`);
    ok(await call('alice', 'PerformOperationalAction', [worker!], cred, 'geni_restart', {}));
    await waitFor(() => (running(`${mark}-worker`).some((p) => p !== before) && !running(`${mark}-worker`).includes(before!) ? true : undefined), 'a restarted worker');
    await waitOperational(slice, 'geni_ready');

    const deleted = ok(await call('alice', 'Delete', [slice], cred, {}));
    assert.deepEqual(
      deleted.map((s: Any) => s.geni_allocation_status),
      ['geni_unallocated', 'geni_unallocated'],
    );
    await waitProcesses(`${mark}-web`, 0);
    await waitProcesses(`${mark}-worker`, 0);
    refused(await call('alice', 'Status', [slice], cred, {}), GENI.SEARCHFAILED);
    // v3: Describe of a slice with nothing here is an empty manifest
    assert.deepEqual(ok(await call('alice', 'Describe', [slice], cred, RSPEC_VERSION)).geni_slivers, []);
    // and the slice may be allocated anew
    await allocate(slice, [{ id: 'again', kind: 'process' }]);
    ok(await call('alice', 'Delete', [slice], cred, {}));
  });

  it('Shutdown: operator only; stops every process, keeps logs, work dirs and state; then refuses the experimenter until restored', async () => {
    const slice = newSlice();
    const mark = slice.split('+').at(-1)!;
    const cred = credential(ALICE, slice);
    // `stubborn` ignores SIGTERM: its stop takes the grace period, so a second Shutdown sees it in progress
    const [web, stubborn] = await allocate(slice, [
      { id: 'web', kind: 'execute' },
      { id: 'stubborn', kind: 'execute', script: `sh -c 'trap "" TERM; while :; do sleep 0.2; done'` },
    ]);
    await provisionAndStart(slice);
    await waitOperational(slice, 'geni_ready');
    await waitProcesses(`${mark}-web`, 1);
    const service = await sliceService(slice);
    const lrps = (await serviceStatus(drover.ctx, OPS, service.id)).lrps.map((l) => l.desired);
    const guids = lrps.map((d) => d.processGuid);
    const webGuid = lrps.find((d) => d.annotation.startsWith('web '))!.processGuid;
    const logOf = (guid: string) => join(dir, 'cells', CELL, 'logs', guid, '0.log');
    const workOf = (guid: string) => join(dir, 'cells', CELL, 'work', guid, '0');
    await waitFor(() => (existsSync(logOf(webGuid)) && readFileSync(logOf(webGuid), 'utf8').includes(`started ${mark}-web`) ? true : undefined), 'the log line');

    // not for experimenters, whatever their credential grants
    refused(await call('alice', 'Shutdown', slice, cred, {}), GENI.FORBIDDEN, /operators/);
    refused(await call('bob', 'Shutdown', slice, credential(BOB, slice), {}), GENI.FORBIDDEN, /operators/);
    // a lock another owner holds covers the slivers: BUSY
    const lock = { serviceInstanceId: `geni|${webGuid}|1.0.0`, owner: 'bob', expiresAt: new Date(Date.now() + 60_000).toISOString().replace(/\.\d+Z$/, 'Z') };
    await createLocks(drover.ctx, { name: 'bob', roles: ['owner'] }, { locks: [lock] });
    refused(await call('operator', 'Shutdown', slice, credential(OPERATOR_URN, slice), {}), GENI.BUSY, /locked by bob/);
    refused(await call('alice', 'PerformOperationalAction', [web!], cred, 'geni_stop', {}), GENI.BUSY);
    await removeLocks(drover.ctx, { name: 'bob', roles: ['owner'] }, 'bob', [lock.serviceInstanceId]);

    const opsCred = credential(OPERATOR_URN, slice);
    const first = call('operator', 'Shutdown', slice, opsCred, {});
    await waitProcesses(`${mark}-web`, 0);
    refused(await call('operator', 'Shutdown', slice, opsCred, {}), GENI.INPROGRESS);
    assert.equal(ok(await first), true);
    await waitProcesses(`${mark}-stubborn`, 0);

    // kept for forensics: logs, working directories, the last state
    assert.match(readFileSync(logOf(webGuid), 'utf8'), new RegExp(`started ${mark}-web`));
    for (const g of guids) assert.ok(existsSync(workOf(g)), `work dir of ${g} kept`);
    const after = await sliceService(slice);
    assert.equal(after.shutdown, true);
    const snapshot = after.attributes[SHUTDOWN_SNAPSHOT] as Any;
    assert.equal(snapshot.by, 'ops');
    assert.deepEqual(snapshot.lrps.map((l: Any) => l.actual.map((a: Any) => a.state)), [['RUNNING'], ['RUNNING']]);
    assert.equal((await drover.ctx.store.listDesiredLrps({ serviceId: after.id })).length, 2, 'the slivers are still defined');

    // every experimenter action on the slice is refused, on every method
    const shut = /slice is shut down/;
    refused(await call('alice', 'Describe', [slice], cred, RSPEC_VERSION), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'Status', [web!], cred, {}), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'PerformOperationalAction', [slice], cred, 'geni_start', {}), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'Provision', [slice], cred, RSPEC_VERSION), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'Renew', [slice], cred, new Date(Date.now() + 3_600_000).toISOString(), {}), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'Delete', [slice], cred, {}), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'Allocate', slice, cred, rspec(mark, [{ id: 'x', kind: 'process' }]), {}), GENI.FORBIDDEN, shut);
    refused(await call('alice', 'Shutdown', slice, cred, {}), GENI.FORBIDDEN);
    // ... and on the other interfaces (the core refuses changes to its LRPs)
    await assert.rejects(updateDesiredLrp(drover.ctx, OPS, webGuid, { instances: 2 }), /shut down/);
    // the operator may look (forensics), and Shutdown again is true
    const seen = await statusOf(slice, 'operator', OPERATOR_URN);
    assert.deepEqual(
      seen.map((s) => [s.geni_operational_status, s.geni_error]),
      [
        ['geni_notready', 'slice is shut down'],
        ['geni_notready', 'slice is shut down'],
      ],
    );
    assert.equal(ok(await call('operator', 'Shutdown', slice, opsCred, {})), true);
    refused(await call('operator', 'PerformOperationalAction', [slice], opsCred, 'geni_start', {}), GENI.FORBIDDEN, shut);
    assert.deepEqual(running(`${mark}-web`), []);

    // an operator restores it (not an experimenter): the processes run again and the experimenter is back
    await assert.rejects(cli('slice', 'restore', slice, '--api', drover.url, '--token', ALICE_TOKEN), /forbidden/);
    assert.match(await cli('slice', 'restore', slice, '--api', drover.url, '--token', OPS_TOKEN), /restored/);
    await waitProcesses(`${mark}-web`, 1);
    await waitOperational(slice, 'geni_ready');
    assert.ok(stubborn);
    ok(await call('alice', 'Delete', [slice], cred, {}));
    await waitProcesses(`${mark}-web`, 0);
    await waitProcesses(`${mark}-stubborn`, 0);
    // a slice known here with nothing left: Shutdown is true; an unknown one: SEARCHFAILED
    assert.equal(ok(await call('operator', 'Shutdown', slice, opsCred, {})), true);
    const unknown = newSlice();
    refused(await call('operator', 'Shutdown', unknown, credential(OPERATOR_URN, unknown), {}), GENI.SEARCHFAILED);
  });

  it('an operator deletes a shut-down slice over HTTP; the experimenter could not', async () => {
    const slice = newSlice();
    const cred = credential(ALICE, slice);
    const opsCred = credential(OPERATOR_URN, slice);
    await allocate(slice, [{ id: 'idle', kind: 'process' }]);
    assert.equal(ok(await call('operator', 'Shutdown', slice, opsCred, {})), true);
    refused(await call('alice', 'Delete', [slice], cred, {}), GENI.FORBIDDEN, /slice is shut down/);
    const route = (token: string | undefined, body: object) =>
      fetch(new URL('/v1/services/delete', drover.url), { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {}, body: JSON.stringify(body) });
    assert.equal((await route(undefined, { kind: 'geni', name: slice })).status, 401);
    assert.equal((await route(ALICE_TOKEN, { kind: 'geni', name: slice })).status, 403);
    assert.equal((await route(OPS_TOKEN, { kind: 'geni', name: newSlice() })).status, 404);
    assert.match(await cli('slice', 'delete', slice, '--api', drover.url, '--token', OPS_TOKEN), /deleting/);
    await waitFor(async () => ((await sliceService(slice)).state === 'TERMINATED' ? true : undefined), 'the slice terminated');
    refused(await call('alice', 'Status', [slice], cred, {}), GENI.SEARCHFAILED);
    await allocate(slice, [{ id: 'fresh', kind: 'process' }]);
    ok(await call('alice', 'Delete', [slice], cred, {}));
  });

  it('expiry: geni_end_time bounds an allocation, Renew is bounded by the credential, an expired slice is EXPIRED and its processes stop', async () => {
    const slice = newSlice();
    const mark = slice.split('+').at(-1)!;
    const cred = credential(ALICE, slice, { expires: Date.now() + 3_600_000 });
    refused(await call('alice', 'Allocate', slice, cred, rspec(mark, [{ id: 'n', kind: 'process' }]), { geni_end_time: new Date(Date.now() - 1000).toISOString() }), GENI.OUTOFRANGE);
    const end = new Date(Date.now() + 8000);
    await allocate(slice, [{ id: 'n', kind: 'process' }], { geni_end_time: end.toISOString() });
    await provisionAndStart(slice);
    await waitProcesses(`${mark}-n`, 1);
    // Provision gave it the credential's lifetime; Renew cannot go past that, nor into the past
    refused(await call('alice', 'Renew', [slice], cred, new Date(Date.now() - 1000).toISOString(), {}), GENI.OUTOFRANGE, /not in the future/);
    refused(await call('alice', 'Renew', [slice], cred, new Date(Date.now() + 2 * 3_600_000).toISOString(), {}), GENI.OUTOFRANGE, /latest allowed/);
    const alap = ok(await call('alice', 'Renew', [slice], cred, new Date(Date.now() + 2 * 3_600_000).toISOString(), { geni_extend_alap: true }));
    assert.ok(Date.parse(alap[0].geni_expires) <= Date.now() + 3_600_000);
    ok(await call('alice', 'Renew', [slice], cred, end.toISOString(), {}));
    await sleep(end.getTime() - Date.now() + 200);
    refused(await call('alice', 'Status', [slice], cred, {}), GENI.EXPIRED);
    refused(await call('operator', 'Shutdown', slice, credential(OPERATOR_URN, slice), {}), GENI.EXPIRED);
    await waitProcesses(`${mark}-n`, 0);
  });

  it('refuses bad credentials with the CREDENTIAL_* / FORBIDDEN codes', async () => {
    const slice = newSlice();
    const other = await ensurePki(join(dir, 'other-ca'));
    const otherSigner = { cert: pem(other.caKeyPair!.cert), key: pem(other.caKeyPair!.key) };
    const args = (creds: XmlRpcValue) => [[slice], creds, RSPEC_VERSION];
    const cases: [XmlRpcValue, number][] = [
      [[], GENI.FORBIDDEN],
      [[{ geni_type: 'geni_abac', geni_version: '1', geni_value: 'x' }], GENI.FORBIDDEN],
      [[{ geni_type: 'geni_sfa', geni_version: '3', geni_value: '<not-a-credential/>' }], GENI.CREDENTIAL_INVALID],
      [[{ geni_type: 'geni_sfa', geni_version: '3', geni_value: 'garbage <<' }], GENI.CREDENTIAL_INVALID],
      [credential(BOB, slice), GENI.CREDENTIAL_MISMATCH],
      [credential(ALICE, newSlice()), GENI.CREDENTIAL_MISMATCH],
      [credential(ALICE, slice, { expires: Date.now() - 1000 }), GENI.CREDENTIAL_EXPIRED],
      [credential(ALICE, slice, { by: otherSigner }), GENI.CREDENTIAL_SIGNER_UNTRUSTED],
      [credential(ALICE, slice, { privileges: ['renewsliver'] }), GENI.FORBIDDEN],
      ['not a list', GENI.BADARGS],
    ];
    for (const [creds, code] of cases) refused(await call('alice', 'Describe', ...args(creds)), code);
    // a tampered credential no longer verifies
    const tampered = credential(ALICE, slice)[0]!.geni_value.replace(ALICE, BOB);
    refused(await call('bob', 'Describe', [slice], [{ geni_type: 'geni_sfa', geni_version: '3', geni_value: tampered }], RSPEC_VERSION), GENI.CREDENTIAL_SIGNER_UNTRUSTED);
    // the right one
    ok(await call('alice', 'Describe', ...args(credential(ALICE, slice))));
  });

  it('answers bad arguments with GENI codes and bad XML with XML-RPC faults; the server stays up and nothing changes', async () => {
    const before = (await drover.ctx.store.listServices()).length;
    const slice = newSlice();
    const cred = credential(ALICE, slice);
    const mark = 'bad';
    refused(await call('alice', 'Allocate', 'urn:publicid:IDN+drover+user+alice', cred, rspec(mark, [{ id: 'a', kind: 'process' }]), {}), GENI.BADARGS, /slice URN/);
    refused(await call('alice', 'Allocate', slice, cred, '<rspec', {}), GENI.BADARGS, /well-formed/);
    refused(await call('alice', 'Allocate', slice, cred, '<rspec xmlns="http://www.geni.net/resources/rspec/3"/>', {}), GENI.BADARGS, /no node/);
    refused(await call('alice', 'Allocate', slice, cred, rspec(mark, [{ id: 'a', kind: 'process' }]).replace('drover-process', 'raw-pc'), {}), GENI.BADARGS, /sliver type/);
    refused(await call('alice', 'Allocate', slice, cred, 42, {}), GENI.BADARGS, /rspec must be a string/);
    refused(await call('alice', 'Allocate', slice), GENI.BADARGS, /arguments/);
    refused(await call('alice', 'Status', 'not-a-list', cred, {}), GENI.BADARGS);
    refused(await call('alice', 'Status', [], cred, {}), GENI.BADARGS);
    refused(await call('alice', 'Status', [slice], cred, 'options'), GENI.BADARGS);
    refused(await call('alice', 'Status', ['x'.repeat(500_000)], cred, {}), GENI.BADARGS);
    refused(await call('alice', 'Status', [slice], cred, {}), GENI.SEARCHFAILED);
    refused(await call('alice', 'Status', [geniUrn('sliver', 'feedbeef')], cred, {}), GENI.SEARCHFAILED);

    // allocated but not provisioned: geni_start does not apply; best effort reports it per sliver
    const [sliver] = await allocate(slice, [{ id: 'a', kind: 'process' }]);
    refused(await call('alice', 'Allocate', slice, cred, rspec(mark, [{ id: 'b', kind: 'process' }]), {}), GENI.ALREADYEXISTS);
    refused(await call('alice', 'PerformOperationalAction', [slice], cred, 'geni_start', {}), GENI.UNSUPPORTED, /not in a state/);
    const best = ok(await call('alice', 'PerformOperationalAction', [slice], cred, 'geni_start', { geni_best_effort: true }));
    assert.equal(best[0].geni_sliver_urn, sliver);
    assert.match(best[0].geni_error, /not in a state for geni_start/);
    refused(await call('alice', 'PerformOperationalAction', [slice], cred, 'geni_reboot', {}), GENI.UNSUPPORTED);
    // another experimenter with a credential for it still does not own it
    refused(await call('bob', 'Delete', [slice], credential(BOB, slice), {}), GENI.FORBIDDEN);
    ok(await call('alice', 'Delete', [sliver!], cred, {}));
    const changed = (await drover.ctx.store.listServices()).length;

    const t = target('alice');
    const fault = async (body: string | Buffer, code: number) => {
      const res = await postXml(t, body);
      assert.equal(res.status, 200);
      assert.throws(() => decodeResponse(res.body), (e: unknown) => e instanceof XmlRpcFault && e.faultCode === code);
    };
    await fault('<methodCall><methodName>GetVersion', FAULT.parseError);
    await fault('not xml at all', FAULT.parseError);
    const laughs = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><methodCall><methodName>GetVersion</methodName><params><param><value>&lol2;</value></param></params></methodCall>`;
    await fault(laughs, FAULT.parseError);
    await fault(`<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><methodCall><methodName>GetVersion</methodName></methodCall>`, FAULT.parseError);
    await fault(encodeCall('GetVersion', [{}]).replace('<struct></struct>', '<array><data>'.repeat(200) + '</data></array>'.repeat(200)), FAULT.parseError);
    await fault(encodeCall('NoSuchMethod', []), FAULT.methodNotFound);
    await fault(encodeCall('GetVersion', []).replace('<params>', '<params><param><value><int>99999999999</int></value></param>'), FAULT.invalidRequest);
    await fault(encodeCall('Status', [['x'.repeat(2 * 1024 * 1024)]]), FAULT.invalidRequest);
    const get = await new Promise<number>((resolve, reject) => {
      import('node:https').then(({ request }) => request(t.url, { ca: t.ca, cert: t.cert, key: t.key, agent: false }, (res) => resolve(res.statusCode!)).on('error', reject).end());
    });
    assert.equal(get, 405);

    assert.equal(ok(await call('alice', 'GetVersion', {})).geni_api, 3, 'still serving');
    assert.equal(changed, before + 1, 'only the one allocated slice was recorded');
    assert.equal((await drover.ctx.store.listServices()).length, changed, 'bad input changed nothing');
  });

  it('rejects at TLS a client without a certificate or with one from another CA', async () => {
    const other = await ensurePki(join(dir, 'stranger-ca'));
    const body = encodeCall('GetVersion', [{}]);
    const base = target('alice');
    await assert.rejects(postXml({ ...base, cert: undefined, key: undefined }, body));
    await assert.rejects(postXml({ ...base, cert: pem(other.operator!.cert), key: pem(other.operator!.key) }, body));
    ok(decodeResponse((await postXml(base, body)).body));
  });

  it('issues certificates and credentials from the command line that the endpoint accepts', async () => {
    const out = join(dir, 'cli');
    const files = (await cli('certs', 'issue', '--urn', geniUrn('user', 'carol'), '--data-dir', dir, '--out', out, '--days', '2')).trim().split('\n');
    assert.deepEqual(files, [join(out, 'carol.pem'), join(out, 'carol-key.pem')]);
    const slice = newSlice();
    const xml = await cli('certs', 'credential', '--slice', slice, '--user', geniUrn('user', 'carol'), '--data-dir', dir);
    // carol is no principal of the --auth file: known certificate, unknown caller
    const carol = { ...target('alice'), cert: pem(files[0]!), key: pem(files[1]!) };
    const r = (await xmlRpcCall(carol, 'Status', [[slice], [{ geni_type: 'geni_sfa', geni_version: 3, geni_value: xml.trim() }], {}])) as Any;
    refused(r, GENI.FORBIDDEN, /not known/);
    ok(await xmlRpcCall(carol, 'GetVersion', [{}]));
  });

  it('serves Python 3 xmlrpc.client over an ssl context with a client certificate, as omni-style tools call it', async () => {
    const slice = newSlice();
    const mark = slice.split('+').at(-1)!;
    const credFile = join(dir, 'alice-cred.xml');
    writeFileSync(credFile, credential(ALICE, slice)[0]!.geni_value);
    const rspecFile = join(dir, 'py-rspec.xml');
    writeFileSync(rspecFile, rspec(mark, [{ id: 'py', kind: 'process' }]));
    const lines = await new Promise<Any[]>((resolve, reject) =>
      execFile(
        '/usr/bin/python3',
        [packagePath('test', 'geni-client.py'), drover.geni!.url, ca.cert, certs.alice!.cert, certs.alice!.key, credFile, slice, rspecFile, `${MARK}=${mark}-py`],
        { timeout: 60_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`geni-client.py: ${err.message}\n${stderr}`)) : resolve(stdout.trim().split('\n').map((l) => JSON.parse(l)))),
      ),
    );
    assert.deepEqual(
      lines.map((l) => [l.method, l.geni_code]),
      [
        ['GetVersion', 0],
        ['Allocate', 0],
        ['Provision', 0],
        ['PerformOperationalAction', 0],
        ['Status', 0],
        ['Delete', 0],
        ['Status', GENI.SEARCHFAILED],
      ],
    );
    assert.equal(lines[4].operational, 'geni_ready');
    assert.equal(lines[4].processes, 1, 'the sliver ran one marked process while ready');
    await waitProcesses(`${mark}-py`, 0);
  });

  it('with --tls-* files and --geni-trust-certs in open mode: the certificate alone authorizes; the operator certificate is the operator', async () => {
    const pki = drover.geni!.pki;
    const other = await startDrover({
      dataDir: join(dir, 'trusting'),
      agent: false,
      http: '127.0.0.1:0',
      geni: '127.0.0.1:0',
      tlsCert: pki.server.cert,
      tlsKey: pki.server.key,
      tlsCa: pki.ca,
      geniTrustCerts: true,
      logLevel: 'silent',
      mqtt: 'none',
    });
    try {
      const at = (who: string): XmlRpcTarget => ({ ...target(who), url: other.geni!.url });
      const slice = newSlice();
      assert.equal(other.geni!.pki.caKeyPair, undefined, 'no PKI of its own');
      ok(await xmlRpcCall(at('alice'), 'Allocate', [slice, [], rspec('trust', [{ id: 'n', kind: 'process' }]), {}]));
      refused((await xmlRpcCall(at('alice'), 'Shutdown', [slice, [], {}])) as Any, GENI.FORBIDDEN, /operators/);
      assert.equal(ok(await xmlRpcCall(at('operator'), 'Shutdown', [slice, [], {}])), true);
      refused((await xmlRpcCall(at('alice'), 'Status', [[slice], [], {}])) as Any, GENI.FORBIDDEN, /slice is shut down/);
    } finally {
      await other.close();
    }
  });
});
