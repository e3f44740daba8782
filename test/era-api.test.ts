// The Era mservice REST API end to end: real HTTP, real zips, real processes (the
// in-process cell agent of a Drover on a SQLite temp dir).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { NO_ATTACHMENT_REASON } from '../src/model/mservice.js';
import {
  actualLrps,
  CRASH_SH,
  deflatedZeros,
  EXECUTABLE,
  expect,
  http,
  instancesOf,
  killProcessesOf,
  makeZip,
  MSERVICES,
  processesOf,
  RUN_SH,
  serviceZip,
  SYMLINK,
  waitFor,
} from './era-fixtures.js';

const DOMAIN = 'era-test';
const Q = `?domain=${DOMAIN}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let dir: string;
let drover: RunningDrover;
let url: string;
const created = new Set<string>();

const logOf = (id: string) => join(dir, 'cells', 'cell-a', 'logs', id, '0.log');
const workOf = (id: string) => join(dir, 'cells', 'cell-a', 'work', id, '0');
const readLog = (id: string) => (existsSync(logOf(id)) ? readFileSync(logOf(id), 'utf8') : '');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex').toUpperCase();
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function create(body: object, domainQuery = Q): Promise<any> {
  const m = await expect(url, 201, 'POST', `${MSERVICES}${domainQuery}`, body);
  created.add(m.id);
  return m;
}
const upload = (id: string, zip: Buffer) => expect(url, 200, 'POST', `${MSERVICES}/${id}/attachment${Q}`, zip);
const get = (id: string) => expect(url, 200, 'GET', `${MSERVICES}/${id}${Q}`);

/** The one running instance (process group) of an mservice, once its log shows `line`. */
async function runningWith(id: string, line: string): Promise<number> {
  return waitFor(
    () => {
      const groups = instancesOf(id);
      return groups.length === 1 && readLog(id).includes(line) ? groups[0]!.pgid : undefined;
    },
    `${id} running with "${line}" in its log (log so far: ${readLog(id).slice(-300)})`,
  );
}

const stopped = (id: string) => waitFor(async () => (instancesOf(id).length === 0 && (await actualLrps(url, id)).length === 0 ? true : undefined), `${id} stopped`);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'drover-era-api-'));
  drover = await startDrover({ dataDir: dir, agent: true, cellId: 'cell-a', http: '127.0.0.1:0', logLevel: 'silent', mqtt: 'none' });
  url = drover.url;
});

after(async () => {
  await drover.agent?.stopAll();
  await drover.close();
  await sleep(300); // a start already under way when the agent closed may still spawn
  await killProcessesOf(created);
  rmSync(dir, { recursive: true, force: true });
});

describe('Era mservice REST API with real processes', () => {
  let id: string;
  let zip: Buffer;

  it('creates an mservice that waits for its zip, then runs the unpacked script with the macros expanded', async () => {
    const m = await create({
      name: 'echoer',
      cmdline: './bin/run.sh',
      cmdparam: `--domain %DOMAIN% --ws '%WEBSERVERS%' --log %LOGPATH% --node %SERVERNAME% "two words" %UNKNOWN%`,
      opts: { title: 'Echo', mode: 'active-passive', heartbeat_timeout: '2000' },
      ext: { team: 'ops' },
    });
    id = m.id;
    assert.match(id, UUID);
    assert.equal(m.enabled, true);
    assert.equal(m.attachment, null);
    assert.equal(m.opts.title, 'Echo');
    assert.equal(m.opts.heartbeat_timeout, '2000');
    assert.equal(m.opts.attachment_info, undefined);
    assert.equal(m.ext.team, 'ops');
    assert.equal(m.ext.disabled_reason, NO_ATTACHMENT_REASON, 'says why it does not run');
    assert.ok(!Number.isNaN(Date.parse(m.ext.ct)) && m.ext.lwt === m.ext.ct);
    // enabled, but without its zip nothing runs
    await sleep(700);
    assert.deepEqual(await actualLrps(url, id), []);
    assert.deepEqual(instancesOf(id), []);

    zip = serviceZip();
    const t0 = Date.now();
    const withZip = await upload(id, zip);
    assert.equal(withZip.attachment, 'attachment.zip');
    assert.deepEqual(withZip.opts.attachment_info, { hasha: `md5;${md5(zip)}`, size: zip.length, mtime: withZip.opts.attachment_info.mtime });
    assert.ok(Math.abs(Date.parse(withZip.opts.attachment_info.mtime) - t0) < 5000);
    assert.equal(withZip.ext.disabled_reason, undefined);

    await runningWith(id, 'arg=%UNKNOWN%');
    const lines = readLog(id).trim().split('\n');
    assert.deepEqual(lines, [
      `cwd=${workOf(id)}`,
      'arg=--domain',
      `arg=${DOMAIN}`,
      'arg=--ws',
      `arg=${JSON.stringify([url])}`,
      'arg=--log',
      `arg=${join(dir, 'cells', 'cell-a', 'logs', id)}`,
      'arg=--node',
      'arg=cell-a',
      'arg=two words',
      'arg=%UNKNOWN%',
    ]);
    assert.equal(readFileSync(join(workOf(id), 'README'), 'utf8'), 'hello', 'the whole zip is unpacked');
    const actual = await waitFor(async () => (await actualLrps(url, id)).find((a) => a.state === 'RUNNING'), 'RUNNING');
    assert.equal(actual.cell_id, 'cell-a');
  });

  it('lists, gets and downloads per domain; the same bytes come back', async () => {
    const list = await expect(url, 200, 'GET', `${MSERVICES}${Q}`);
    assert.deepEqual(
      list.map((m: any) => m.id),
      [id],
    );
    assert.deepEqual(await expect(url, 200, 'GET', MSERVICES), [], 'the default domain has none');
    await expect(url, 404, 'GET', `${MSERVICES}/${id}`);
    const got = await get(id);
    assert.equal(got.name, 'echoer');
    const download = await http(url, 'GET', `${MSERVICES}/${id}/attachment${Q}`);
    assert.equal(download.status, 200);
    assert.equal(download.headers.get('content-type'), 'application/zip');
    assert.match(download.headers.get('content-disposition') ?? '', /filename="attachment\.zip"/);
    assert.ok(download.bytes.equals(zip));
    // the BBS view of the same thing
    const bbs = await http(url, 'POST', '/v1/desired_lrps/get_by_process_guid.r2', { process_guid: id });
    assert.equal(bbs.body.desired_lrp.domain, DOMAIN);
    assert.equal(bbs.body.desired_lrp.placement.strategy, 'leader');
    assert.equal(bbs.body.desired_lrp.setup.download.cache_key, `sha256:${sha256(zip)}`);
  });

  it('updates: text alone keeps the process, PUT and PATCH of the command restart it, enabled stops and starts it', async () => {
    const pgid = instancesOf(id)[0]!.pgid;
    const before = await get(id);
    await sleep(5); // so that lwt moves
    const titled = await expect(url, 200, 'PATCH', `${MSERVICES}/${id}${Q}`, { opts: { title: 'Renamed' }, ext: { team: null, owner: 'me' } });
    assert.equal(titled.opts.title, 'Renamed');
    assert.equal(titled.opts.heartbeat_timeout, '2000', 'the other opts are kept');
    assert.equal(titled.cmdline, './bin/run.sh');
    assert.deepEqual(Object.keys(titled.ext).sort(), ['ct', 'lwt', 'owner']);
    assert.equal(titled.ext.ct, before.ext.ct);
    assert.ok(Date.parse(titled.ext.lwt) > Date.parse(before.ext.lwt));
    await sleep(500);
    assert.deepEqual(instancesOf(id).map((g) => g.pgid), [pgid], 'not restarted for a title');

    // PUT replaces the whole descriptor (what it leaves out takes its default); the zip stays
    const replaced = await expect(url, 200, 'PUT', `${MSERVICES}/${id}${Q}`, { name: 'echoer2', cmdline: './bin/run.sh', cmdparam: 'second' });
    assert.equal(replaced.name, 'echoer2');
    assert.equal(replaced.opts.title, '');
    assert.equal(replaced.attachment, 'attachment.zip');
    assert.deepEqual(replaced.ext, { ct: before.ext.ct, lwt: replaced.ext.lwt });
    const second = await runningWith(id, 'arg=second');
    assert.notEqual(second, pgid);

    await expect(url, 200, 'PATCH', `${MSERVICES}/${id}${Q}`, { cmdparam: 'third' });
    const third = await runningWith(id, 'arg=third');
    assert.notEqual(third, second);

    const off = await expect(url, 200, 'PATCH', `${MSERVICES}/${id}${Q}`, { enabled: false });
    assert.equal(off.enabled, false);
    assert.equal(off.ext.disabled_reason, undefined, 'switched off by its owner: nothing to explain');
    await stopped(id);

    // a new zip, as multipart/form-data, and enabled again
    const v2 = serviceZip(RUN_SH.replace('exec sleep', 'echo v2; exec sleep'));
    const boundary = 'XyZ123';
    const multipart = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nignored\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="svc-v2.zip"\r\nContent-Type: application/zip\r\n\r\n`),
      v2,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await http(url, 'PUT', `${MSERVICES}/${id}/attachment${Q}`, multipart, { 'content-type': `multipart/form-data; boundary=${boundary}` });
    assert.equal(res.status, 200, res.bytes.toString());
    assert.equal(res.body.attachment, 'svc-v2.zip');
    assert.equal(res.body.opts.attachment_info.hasha, `md5;${md5(v2)}`);
    assert.deepEqual(instancesOf(id), [], 'still disabled');
    await expect(url, 200, 'PATCH', `${MSERVICES}/${id}${Q}`, { enabled: true });
    await runningWith(id, 'v2');
    assert.ok((await http(url, 'GET', `${MSERVICES}/${id}/attachment${Q}`)).bytes.equals(v2));
    // the old zip had no other user: it is gone
    assert.equal(await drover.ctx.store.getAttachment(sha256(zip)), undefined);
  });

  it('delete stops the process and drops the zip', async () => {
    const hash = sha256((await http(url, 'GET', `${MSERVICES}/${id}/attachment${Q}`)).bytes);
    assert.ok(await drover.ctx.store.getAttachment(hash));
    const res = await http(url, 'DELETE', `${MSERVICES}/${id}${Q}`);
    assert.equal(res.status, 204);
    await stopped(id);
    await expect(url, 404, 'GET', `${MSERVICES}/${id}${Q}`);
    assert.equal(await drover.ctx.store.getAttachment(hash), undefined);
    assert.equal((await http(url, 'GET', `/v1/attachments/${hash}`)).status, 404);
  });

  it('refuses bad descriptors with 400 naming the field, and stores nothing', async () => {
    const bad = async (body: object, field: string) => {
      const res = await http(url, 'POST', `${MSERVICES}${Q}`, body);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.field, field);
      assert.equal(res.body.error, 'invalid_request');
      assert.ok(res.body.message.startsWith(`${field}: `), res.body.message);
    };
    await bad({ id: 'not-a-uuid', name: 'x', cmdline: 'true' }, 'id');
    await bad({ name: 'x', cmdline: 'true', opts: { mode: 'cold-standby' } }, 'opts.mode');
    await bad({ name: 'x', cmdline: 'true', opts: { heartbeat_timeout: 100 } }, 'opts.heartbeat_timeout');
    await bad({ name: 'x', cmdline: 'true', opts: { heartbeat_interval: 70000 } }, 'opts.heartbeat_interval');
    await bad({ name: 'x' }, 'cmdline');
    await bad({ name: 'x', cmdline: 'true', domain: 'd' }, 'domain');
    const notJson = await http(url, 'POST', `${MSERVICES}${Q}`, Buffer.from('{nope'), { 'content-type': 'application/json' });
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.field, 'body');
    const badDomain = await http(url, 'GET', `${MSERVICES}?domain=a/b`);
    assert.equal(badDomain.status, 400);
    assert.equal(badDomain.body.field, 'domain');
    assert.deepEqual(await expect(url, 200, 'GET', `${MSERVICES}${Q}`), [], 'nothing stored');

    const m = await create({ id: '0f0e0d0c-0b0a-4009-8008-070605040302', name: 'taken', cmdline: 'true', enabled: false });
    assert.equal(m.id, '0f0e0d0c-0b0a-4009-8008-070605040302');
    assert.equal((await http(url, 'POST', `${MSERVICES}${Q}`, { name: 'taken', cmdline: 'true' })).status, 409, 'names are unique in a domain');
    assert.equal((await http(url, 'POST', `${MSERVICES}${Q}`, { id: m.id, name: 'other', cmdline: 'true' })).status, 409, 'so are ids');
    await create({ name: 'taken', cmdline: 'true', enabled: false }, '?domain=elsewhere');
    const mismatch = await http(url, 'PUT', `${MSERVICES}/${m.id}${Q}`, { id: '00000000-0000-4000-8000-000000000000', name: 'taken', cmdline: 'true' });
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.body.field, 'id');
    const patchBad = await http(url, 'PATCH', `${MSERVICES}/${m.id}${Q}`, { opts: { restart_mode: 'sometimes' } });
    assert.equal(patchBad.body.field, 'opts.restart_mode');
    assert.equal((await get(m.id)).opts.restart_mode, 'permanent', 'unchanged');
    assert.equal((await http(url, 'GET', `${MSERVICES}/00000000-0000-4000-8000-000000000000${Q}`)).status, 404);
  });

  it('refuses zip-slip, absolute, symlink-out and bomb archives with a clear error, storing nothing', async () => {
    const m = await create({ name: 'hostile', cmdline: './run.sh' });
    const refused = async (archive: Buffer, message: RegExp) => {
      const res = await http(url, 'POST', `${MSERVICES}/${m.id}/attachment${Q}`, archive);
      assert.equal(res.status, 400, res.bytes.toString());
      assert.equal(res.body.field, 'attachment');
      assert.match(res.body.message, message);
      assert.equal(await drover.ctx.store.getAttachment(sha256(archive)), undefined, 'not stored');
    };
    await refused(makeZip([{ name: 'run.sh', data: 'x', mode: EXECUTABLE }, { name: '../../escape.sh', data: 'x' }]), /zip rejected: entry "\.\.\/\.\.\/escape\.sh" leads out of the working directory \(zip-slip\)/);
    await refused(makeZip([{ name: '/etc/cron.d/evil', data: 'x' }]), /entry "\/etc\/cron\.d\/evil" has an absolute path/);
    await refused(makeZip([{ name: 'logs', data: '../../../../var/log', mode: SYMLINK }]), /symlink "logs" points to "\.\.\/\.\.\/\.\.\/\.\.\/var\/log", outside the working directory/);
    await refused(makeZip([{ name: 'zeros', deflated: await deflatedZeros(300 * 1024 * 1024) }]), /unpacks to more than the \d+ bytes allowed \(zip bomb\?\)/);
    await refused(makeZip(Array.from({ length: 10_001 }, (_, i) => ({ name: `f${i}` }))), /10001 entries/);
    await refused(Buffer.from('PK but not really'), /not a zip archive/);
    const empty = await http(url, 'POST', `${MSERVICES}/${m.id}/attachment${Q}`, Buffer.alloc(0));
    assert.equal(empty.status, 400);
    assert.equal(empty.body.field, 'attachment');
    const after = await get(m.id);
    assert.equal(after.attachment, null);
    assert.equal(after.ext.disabled_reason, NO_ATTACHMENT_REASON);
    assert.equal((await http(url, 'POST', `${MSERVICES}/00000000-0000-4000-8000-000000000000/attachment${Q}`, serviceZip())).status, 404);
  });

  it('the crash-loop guard disables an mservice that crashes after 5 restarts within 10 s, and says why', async () => {
    const m = await create({ name: 'crasher', cmdline: './bin/run.sh' });
    const t0 = Date.now();
    await upload(m.id, serviceZip(CRASH_SH));
    const off = await waitFor(async () => {
      const d = await get(m.id);
      return d.enabled === false ? d : undefined;
    }, 'the crash loop disabled it');
    console.log(`# crash loop disabled the mservice ${Date.now() - t0} ms after its upload`);
    assert.match(off.ext.disabled_reason, /^crash loop: instance 0 crashed again after 5 restarts within 10 s \(last: exited with code 3\)$/);
    assert.ok(Date.parse(off.ext.disabled_at) >= t0);
    assert.equal(readLog(m.id).split('\n').filter((l) => l === 'failing').length, 6, 'the first start and 5 restarts');
    await stopped(m.id);
    // the guard's change is an event like any other: the operator (and the dashboard) see it
    const events = await drover.ctx.store.listEvents(0, 100_000);
    const disabled = events.filter((e) => e.type === 'desired_lrp_changed' && (e.payload as any).after.processGuid === m.id && (e.payload as any).after.enabled === false);
    assert.equal(disabled.length, 1);

    // fixed and enabled again: it runs, and the reason is gone
    await upload(m.id, serviceZip());
    const on = await expect(url, 200, 'PATCH', `${MSERVICES}/${m.id}${Q}`, { enabled: true });
    assert.equal(on.ext.disabled_reason, undefined);
    assert.equal(on.ext.disabled_at, undefined);
    await runningWith(m.id, 'cwd=');
    await expect(url, 204, 'DELETE', `${MSERVICES}/${m.id}${Q}`);
    await stopped(m.id);
  });

  it('restart modes: temporary never restarts, transient not after a clean exit', async () => {
    const exit = (code: number) => serviceZip(`#!/bin/sh\necho ran\nexit ${code}\n`);
    const temporary = await create({ name: 'once', cmdline: './bin/run.sh', opts: { restart_mode: 'temporary' } });
    await upload(temporary.id, exit(3));
    const transient = await create({ name: 'clean', cmdline: './bin/run.sh', opts: { restart_mode: 'transient' } });
    await upload(transient.id, exit(0));
    for (const [m, reason] of [
      [temporary, 'exited with code 3'],
      [transient, 'exited with code 0'],
    ] as const) {
      const crashed = await waitFor(async () => {
        const [a] = await actualLrps(url, m.id);
        return a?.state === 'CRASHED' ? a : undefined;
      }, `${m.name} CRASHED`);
      assert.equal(crashed.crash_reason, reason);
      await sleep(1500);
      const [still] = await actualLrps(url, m.id);
      assert.equal(still.state, 'CRASHED', `${m.name} is not restarted`);
      assert.equal(still.crash_count ?? 0, 1);
      assert.equal(readLog(m.id), 'ran\n');
      assert.equal((await get(m.id)).enabled, true, 'not a crash loop');
    }
    assert.equal(processesOf(temporary.id).length + processesOf(transient.id).length, 0);
  });
});
