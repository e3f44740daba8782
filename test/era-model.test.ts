// The Era mservice model without a server: validation naming the field, the command line
// (argv or shell, macros quoted for where they stand — checked by running /bin/sh), the
// descriptor ⇄ DesiredLRP mapping, and the zip rules on real files.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { inspectZip, unpackZip, ZipRejected } from '../src/agent/attachments.js';
import { expandMacros, macroValues } from '../src/agent/macros.js';
import { validateDesiredLrp } from '../src/model/validate.js';
import {
  commandFor,
  descriptorOf,
  desiredLrpFor,
  FieldError,
  mergeMservice,
  NO_ATTACHMENT_REASON,
  validateMservice,
  type StoredMservice,
} from '../src/model/mservice.js';
import { deflatedZeros, EXECUTABLE, makeZip, SYMLINK } from './era-fixtures.js';

const base = { name: 'svc', cmdline: './run.sh' };

function refusedField(input: unknown): string {
  try {
    validateMservice(input);
  } catch (e) {
    assert.ok(e instanceof FieldError, `a FieldError, got ${e}`);
    return e.field;
  }
  assert.fail('accepted');
}

describe('mservice validation', () => {
  it('names the field of every refusal', () => {
    assert.equal(refusedField({ ...base, id: 'not-a-uuid' }), 'id');
    assert.equal(refusedField({ cmdline: 'x' }), 'name');
    assert.equal(refusedField({ ...base, name: 'has space' }), 'name');
    assert.equal(refusedField({ name: 'svc' }), 'cmdline');
    assert.equal(refusedField({ ...base, cmdline: '   ' }), 'cmdline');
    assert.equal(refusedField({ ...base, cmdline: "echo 'open" }), 'cmdline');
    assert.equal(refusedField({ ...base, cmdparam: 'a "b' }), 'cmdparam');
    assert.equal(refusedField({ ...base, enabled: 'yes' }), 'enabled');
    assert.equal(refusedField({ ...base, opts: { mode: 'hot-standby' } }), 'opts.mode');
    assert.equal(refusedField({ ...base, opts: { site_mode: 'some' } }), 'opts.site_mode');
    assert.equal(refusedField({ ...base, opts: { site_mode: 'selected' } }), 'opts.selected_sites');
    assert.equal(refusedField({ ...base, opts: { restart_mode: 'always' } }), 'opts.restart_mode');
    assert.equal(refusedField({ ...base, opts: { leader_mode: 'last' } }), 'opts.leader_mode');
    assert.equal(refusedField({ ...base, opts: { heartbeat_timeout: 499 } }), 'opts.heartbeat_timeout');
    assert.equal(refusedField({ ...base, opts: { heartbeat_timeout: '60001' } }), 'opts.heartbeat_timeout');
    assert.equal(refusedField({ ...base, opts: { heartbeat_interval: 'soon' } }), 'opts.heartbeat_interval');
    assert.equal(refusedField({ ...base, opts: { heartbeat_timeout: 1000, heartbeat_interval: 2000 } }), 'opts.heartbeat_interval');
    assert.equal(refusedField({ ...base, opts: { colour: 'red' } }), 'opts.colour');
    assert.equal(refusedField({ ...base, extra: 1 }), 'extra');
    assert.equal(refusedField({ ...base, ext: [] }), 'ext');
    // each part within its limit, the whole too large for the annotation: the largest part is named
    assert.equal(refusedField({ ...base, cmdparam: 'p'.repeat(3000), opts: { comment: 'c'.repeat(4000) }, ext: { a: 'e'.repeat(2000) } }), 'opts.comment');
  });

  it('fills defaults, accepts both heartbeat spellings, keeps ext but not the server-kept keys', () => {
    const v = validateMservice({ ...base, id: 'A0B1C2D3-0000-4000-8000-00000000000A', opts: { heartbeat_interval: '1500' }, ext: { team: 'ops', ct: 'x', lwt: 'y', disabled_reason: 'z' } });
    assert.equal(v.id, 'a0b1c2d3-0000-4000-8000-00000000000a');
    assert.equal(v.enabled, true);
    assert.equal(v.cmdparam, '');
    assert.deepEqual(v.opts, {
      title: '',
      comment: '',
      mode: 'active-passive',
      section: '',
      leader_mode: 'first',
      site_mode: 'all',
      selected_sites: [],
      restart_mode: 'permanent',
      heartbeat_timeout: '1500',
    });
    assert.deepEqual(v.ext, { team: 'ops' });
    assert.equal(validateMservice({ ...base, opts: { heartbeat_timeout: 500 } }).opts.heartbeat_timeout, 500);
    assert.equal(validateMservice({ ...base, opts: { heartbeat_timeout: 60000 } }).opts.heartbeat_timeout, 60000);
  });
});

describe('command line', () => {
  it('splits words as a shell would and runs without one when it can', () => {
    assert.deepEqual(commandFor('./run.sh', `--a "two words" 'it''s' x\\ y %DOMAIN% --ws='%WEBSERVERS%'`), {
      path: './run.sh',
      args: ['--a', 'two words', 'its', 'x y', '%DOMAIN%', '--ws=%WEBSERVERS%'],
    });
    assert.deepEqual(commandFor('  node   app.js ', ''), { path: 'node', args: ['app.js'] });
  });

  it('uses /bin/sh when the line needs one, with each macro quoted for where it stands', () => {
    const cmd = commandFor('echo', `%DOMAIN% "[%WEBSERVERS%]" '<%SERVERNAME%>' x%LOGPATH%y | cat`);
    assert.equal(cmd.path, '/bin/sh');
    assert.equal(cmd.args[0], '-c');
    // values with spaces, quotes, $, brackets and globs come out as they are, each in its word
    const values = macroValues({ domain: 'd 1', webservers: ['http://h:1', "it's"], logPath: '/l/$HOME/*', cellId: 'c"x' });
    const { env } = expandMacros({ path: cmd.path, args: cmd.args, env: { PATH: process.env.PATH! } }, values);
    const out = execFileSync(cmd.path, [...cmd.args.slice(0, 2), 'sh'], { env, encoding: 'utf8' });
    assert.equal(out, `d 1 [["http://h:1","it's"]] <c"x> x/l/$HOME/*y\n`);
    // a needed shell is seen in any of its forms
    for (const line of ['a > b', 'a; b', 'a && b', 'echo $HOME', 'echo "$HOME"', 'ls *.txt', 'X=1 cmd', 'echo `id`']) {
      assert.equal(commandFor(line, '').path, '/bin/sh', line);
    }
    assert.equal(commandFor('echo', "'$HOME > *'").path, 'echo', 'quoted specials need no shell');
  });

  it('expands macros in argv words in place and sets the ERA_* variables; unknown tokens stay', () => {
    const values = macroValues({ domain: 'dom', webservers: ['http://a:1'], logPath: '/logs/x', cellId: 'cell-a' });
    const got = expandMacros({ path: './run.sh', args: ['%DOMAIN%', '--ws=%WEBSERVERS%', '%LOGPATH%/%SERVERNAME%', '%WEBSERVERS_EX%', '%OTHER%', '100%'], env: {} }, values);
    assert.deepEqual(got.args, ['dom', '--ws=["http://a:1"]', '/logs/x/cell-a', '["http://a:1"]', '%OTHER%', '100%']);
    assert.equal(got.env.ERA_DOMAIN, 'dom');
    assert.equal(got.env.ERA_WEBSERVERS, '["http://a:1"]');
    assert.equal(got.env.ERA_SERVERNAME, 'cell-a');
  });
});

describe('descriptor ⇄ DesiredLRP', () => {
  const stored = (opts: object, attachment = true): StoredMservice => {
    const v = validateMservice({ ...base, cmdparam: '-v', opts });
    return {
      name: v.name,
      cmdline: v.cmdline,
      cmdparam: v.cmdparam,
      opts: v.opts,
      ext: { ct: '2024-01-01T00:00:00.000Z', lwt: '2024-01-01T00:00:00.000Z', k: 1 },
      ...(attachment ? { attachment: { sha256: 'a'.repeat(64), md5: 'b'.repeat(32), size: 10, mtime: '2024-01-02T00:00:00.000Z', name: 'svc.zip' } } : {}),
    };
  };
  const id = '11111111-2222-4333-8444-555555555555';

  it('maps modes, sections, sites and restart modes onto placement and the restart option', () => {
    const ap = validateDesiredLrp(desiredLrpFor(id, 'dom', stored({ mode: 'active-passive', section: 'billing' }), true));
    assert.equal(ap.processGuid, id);
    assert.equal(ap.domain, 'dom');
    assert.deepEqual(ap.placement, { strategy: 'leader', sites: [], sections: ['billing'] });
    assert.equal(ap.instances, 1);
    assert.deepEqual(ap.restart, { mode: 'always', immediate: true, limit: { restarts: 5, windowMs: 10_000 } });
    assert.deepEqual(ap.action, { run: { path: './run.sh', args: ['-v'], dir: '', env: [], user: '' } });
    assert.equal(ap.setup?.download?.from, `/v1/attachments/${'a'.repeat(64)}`);
    const aa = validateDesiredLrp(desiredLrpFor(id, 'dom', stored({ mode: 'active-active', site_mode: 'selected', selected_sites: ['east'], restart_mode: 'transient' }), true));
    assert.deepEqual(aa.placement, { strategy: 'every-cell', sites: ['east'], sections: [] });
    assert.equal(aa.restart?.mode, 'on-failure');
    assert.equal(validateDesiredLrp(desiredLrpFor(id, 'dom', stored({ restart_mode: 'temporary' }), true)).restart?.mode, 'never');
  });

  it('renders the descriptor back, with attachment_info and why it does not run', () => {
    const d = validateDesiredLrp(desiredLrpFor(id, 'dom', stored({ title: 'T' }), true));
    const m = descriptorOf(d)!;
    assert.equal(m.id, id);
    assert.equal(m.enabled, true);
    assert.equal(m.attachment, 'svc.zip');
    assert.deepEqual(m.opts.attachment_info, { hasha: `md5;${'B'.repeat(32)}`, mtime: '2024-01-02T00:00:00.000Z', size: 10 });
    assert.equal(m.opts.title, 'T');
    assert.deepEqual(m.ext, { ct: '2024-01-01T00:00:00.000Z', lwt: '2024-01-01T00:00:00.000Z', k: 1 });
    // no zip: enabled, but nothing to run, and the descriptor says so
    const bare = validateDesiredLrp(desiredLrpFor(id, 'dom', stored({}, false), true));
    assert.equal(bare.instances, 0);
    assert.equal(bare.setup, undefined);
    assert.equal(descriptorOf(bare)!.ext.disabled_reason, NO_ATTACHMENT_REASON);
    assert.equal(descriptorOf(bare)!.attachment, null);
    // disabled by the guard: the reason and the time
    const off = descriptorOf({ ...d, enabled: false, disabledReason: 'crash loop: x', disabledAt: Date.parse('2024-01-03T00:00:00Z') })!;
    assert.equal(off.enabled, false);
    assert.equal(off.ext.disabled_reason, 'crash loop: x');
    assert.equal(off.ext.disabled_at, '2024-01-03T00:00:00.000Z');
    // any other LRP is not an mservice
    assert.equal(descriptorOf({ ...d, annotation: 'hello' }), undefined);
  });

  it('merges a partial update key by key; null removes an ext key', () => {
    const current = descriptorOf(validateDesiredLrp(desiredLrpFor(id, 'dom', stored({ title: 'T', comment: 'C', heartbeat_timeout: 1000 }), true)))!;
    const merged = validateMservice(mergeMservice(current, { cmdparam: '-x', opts: { comment: 'new', heartbeat_interval: 2000 }, ext: { k: null, j: 2 } }));
    assert.equal(merged.cmdline, './run.sh');
    assert.equal(merged.cmdparam, '-x');
    assert.equal(merged.opts.title, 'T');
    assert.equal(merged.opts.comment, 'new');
    assert.equal(merged.opts.heartbeat_timeout, 2000);
    assert.deepEqual(merged.ext, { j: 2 });
  });
});

describe('zip rules', () => {
  const dirs: string[] = [];
  const temp = () => {
    const d = mkdtempSync(join(tmpdir(), 'drover-era-zip-'));
    dirs.push(d);
    return d;
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  async function rejected(zip: Buffer): Promise<string> {
    await assert.rejects(inspectZip(zip), ZipRejected);
    // the cell refuses the same archive, and writes nothing outside its directory
    const root = temp();
    const dir = join(root, 'work');
    mkdirSync(dir);
    const e = await unpackZip(zip, dir).then(
      () => assert.fail('unpacked'),
      (err: Error) => err,
    );
    assert.ok(e instanceof ZipRejected, String(e));
    assert.deepEqual(readdirNames(root), ['work'], 'nothing next to the working directory');
    return e.message;
  }
  const readdirNames = (d: string) => execFileSync('ls', ['-A', d], { encoding: 'utf8' }).split('\n').filter(Boolean);

  it('unpacks files, directories, modes and inside symlinks', async () => {
    const zip = makeZip([
      { name: 'bin/' },
      { name: 'bin/run.sh', data: '#!/bin/sh\necho hi\n', mode: EXECUTABLE },
      { name: 'conf/app.json', data: '{}' },
      { name: 'current', data: 'bin', mode: SYMLINK },
      { name: 'conf/up', data: '../bin/run.sh', mode: SYMLINK },
    ]);
    const info = await inspectZip(zip);
    assert.equal(info.entries, 5);
    assert.match(info.sha256, /^[0-9a-f]{64}$/);
    const dir = temp();
    await unpackZip(zip, dir);
    assert.equal(readFileSync(join(dir, 'bin/run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.equal(statSync(join(dir, 'bin/run.sh')).mode & 0o777, 0o755);
    assert.equal(readFileSync(join(dir, 'current/run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.equal(readFileSync(join(dir, 'conf/up'), 'utf8'), '#!/bin/sh\necho hi\n');
    // unpacking again replaces the files (it runs before every start)
    await unpackZip(zip, dir);
    assert.equal(execFileSync(join(dir, 'bin/run.sh'), { encoding: 'utf8' }), 'hi\n');
  });

  it('refuses zip-slip, absolute paths, symlinks out, and bombs, saying why', async () => {
    assert.match(await rejected(makeZip([{ name: 'ok', data: 'x' }, { name: '../evil.sh', data: 'x' }])), /"\.\.\/evil\.sh" leads out of the working directory/);
    assert.match(await rejected(makeZip([{ name: 'a/../../evil', data: 'x' }])), /leads out of the working directory/);
    assert.match(await rejected(makeZip([{ name: '/tmp/evil', data: 'x' }])), /"\/tmp\/evil" has an absolute path/);
    assert.match(await rejected(makeZip([{ name: 'link', data: '/etc', mode: SYMLINK }])), /symlink "link" points to "\/etc", outside/);
    assert.match(await rejected(makeZip([{ name: 'a/link', data: '../..', mode: SYMLINK }])), /symlink "a\/link" points to "\.\.\/\.\.", outside/);
    const many = Array.from({ length: 10_001 }, (_, i) => ({ name: `f${i}`, data: '' }));
    assert.match(await rejected(makeZip(many)), /10001 entries, more than the 10000 allowed/);
    // 300 MiB of zeros in a few hundred KiB
    const zeros = await deflatedZeros(300 * 1024 * 1024);
    assert.ok(zeros.data.length < 1024 * 1024);
    assert.match(await rejected(makeZip([{ name: 'big', deflated: zeros }])), /unpacks to more than the 268435456 bytes allowed/);
    // a bomb that lies about its size is caught as it inflates
    const liar = await deflatedZeros(4 * 1024 * 1024);
    assert.match(await rejected(makeZip([{ name: 'small', deflated: liar, declaredSize: 100 }])), /too many bytes/);
    assert.match(await rejected(Buffer.from('not a zip at all')), /not a zip archive/);
  });

  it('never writes through a symlink the working directory already has', async () => {
    const root = temp();
    const outside = join(root, 'outside');
    const dir = join(root, 'work');
    mkdirSync(outside);
    mkdirSync(dir);
    symlinkSync(outside, join(dir, 'evil')); // as a previous run of the instance might leave
    await assert.rejects(unpackZip(makeZip([{ name: 'evil/x/payload', data: 'x' }]), dir), /through a symlink that leads out/);
    assert.deepEqual(readdirNames(outside), []);
    // a file entry named like the link replaces the link, never writes through it
    symlinkSync(join(outside, 'target'), join(dir, 'file'));
    await unpackZip(makeZip([{ name: 'file', data: 'mine' }]), dir);
    assert.equal(existsSync(join(outside, 'target')), false);
    assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'mine');
  });
});
