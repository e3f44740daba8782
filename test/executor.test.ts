import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  adoptProcess,
  processGroupAlive,
  processStartTime,
  readLogTail,
  rotateLogIfLarge,
  spawnProcess,
  type ProcessSpec,
  type RunningProcess,
} from '../src/agent/executor.js';

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
let dir: string;
let started: RunningProcess[] = [];
let strays: number[] = [];

/** Spawns and remembers the process so afterEach can stop it whatever the test did. */
function run(script: string, name: string, extra: Partial<ProcessSpec> = {}): RunningProcess {
  const p = spawnProcess({ path: '/bin/sh', args: ['-c', script], env: ENV, logFile: join(dir, name, 'out.log'), ...extra });
  started.push(p);
  return p;
}

async function waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function waitForLines(file: string, n: number): Promise<string[]> {
  return waitFor(() => {
    const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    return lines.length >= n ? lines : undefined;
  }, `${n} lines in ${file}`);
}

/** Gone, or a zombie: orphans are reaped by PID 1, which may take its time (or never do it). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw err;
  }
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
}

describe('executor', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'drover-executor-'));
  });
  afterEach(async () => {
    await Promise.all(started.map((p) => p.stop(0)));
    for (const pid of strays) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    started = [];
    strays = [];
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sends stdout and stderr to the log file and reports the exit code', async () => {
    const p = run('echo to-stdout; echo to-stderr >&2; sleep 0.3; exit 3', 'basic/nested');
    assert.ok(p.pid > 0);
    assert.equal(p.pgid, p.pid);
    assert.equal(typeof p.startTicks, 'number');
    const info = await p.exited;
    assert.deepEqual(info, { code: 3, signal: null, reason: 'exited with code 3' });
    assert.equal(p.alive(), false);
    const log = join(dir, 'basic/nested/out.log');
    assert.equal(readFileSync(log, 'utf8'), 'to-stdout\nto-stderr\n');
    assert.equal(await readLogTail(log, 10), 'to-stderr\n');
    assert.equal(await readLogTail(join(dir, 'basic/none.log'), 10), '');
  });

  it('stop() takes down the leader and every grandchild', async () => {
    const p = run('for i in 1 2 3; do sleep 100 & echo $!; done; wait', 'tree');
    const kids = (await waitForLines(join(dir, 'tree/out.log'), 3)).map(Number);
    assert.ok(kids.every((pid) => !gone(pid)));
    assert.equal(processGroupAlive(p.pgid), true);
    const info = await p.stop(2000);
    assert.equal(info.signal, 'SIGTERM');
    assert.equal(p.alive(), false);
    for (const pid of [p.pid, ...kids]) assert.ok(gone(pid), `pid ${pid} survived`);
    assert.equal(processGroupAlive(p.pgid), false);
    assert.equal(await p.stop(2000), info, 'stop is idempotent');
  });

  it('stop() SIGKILLs a group that ignores SIGTERM once the grace is over', async () => {
    const p = run('trap "" TERM; echo ready; sleep 100', 'stubborn');
    await waitForLines(join(dir, 'stubborn/out.log'), 1);
    const t0 = Date.now();
    const info = await p.stop(300);
    assert.ok(Date.now() - t0 >= 300, `stopped after ${Date.now() - t0} ms`);
    assert.deepEqual(info, { code: null, signal: 'SIGKILL', reason: 'killed by signal SIGKILL' });
    assert.equal(processGroupAlive(p.pgid), false);
  });

  it('reports a kill -9 from outside', async () => {
    const p = run('exec sleep 100', 'kill9');
    execFileSync('kill', ['-9', String(p.pid)]);
    assert.deepEqual(await p.exited, { code: null, signal: 'SIGKILL', reason: 'killed by signal SIGKILL' });
  });

  it('turns spawn errors into an exit instead of throwing', async () => {
    const enoent = spawnProcess({ path: '/no/such/bin', args: [], env: ENV, logFile: join(dir, 'enoent/out.log') });
    assert.equal(enoent.pid, 0);
    assert.deepEqual(await enoent.exited, { code: null, signal: null, reason: 'spawn ENOENT: /no/such/bin' });
    assert.equal(enoent.alive(), false);
    assert.equal(await enoent.stop(100), await enoent.exited);

    const notExecutable = join(dir, 'plain.txt');
    writeFileSync(notExecutable, 'echo hi\n');
    chmodSync(notExecutable, 0o644);
    const eacces = spawnProcess({ path: notExecutable, args: [], env: ENV, logFile: join(dir, 'eacces/out.log') });
    // root may still be refused: exec needs at least one execute bit.
    assert.equal((await eacces.exited).reason, `spawn EACCES: ${notExecutable}`);

    const noDir = run('true', 'nodir', { dir: join(dir, 'missing') });
    assert.equal((await noDir.exited).reason, `spawn ENOENT: working directory ${join(dir, 'missing')} does not exist`);
  });

  it('rotates by copy-truncate and the running child continues at offset 0', async () => {
    const log = join(dir, 'rotate/out.log');
    const go = join(dir, 'rotate/go');
    mkdirSync(join(dir, 'rotate'));
    writeFileSync(`${log}.1`, 'older\n');
    writeFileSync(`${log}.2`, 'oldest\n');
    const p = run(`head -c 2000 /dev/zero | tr '\\0' a; echo; while [ ! -e '${go}' ]; do sleep 0.02; done; echo after`, 'rotate');
    await waitFor(() => (existsSync(log) && statSync(log).size === 2001) || undefined, 'the first write');
    const before = readFileSync(log, 'utf8');

    assert.equal(await rotateLogIfLarge(log, 5000, 3), false, 'small enough');
    assert.equal(await rotateLogIfLarge(log, 1000, 3), true);
    assert.equal(readFileSync(`${log}.1`, 'utf8'), before);
    assert.equal(readFileSync(`${log}.2`, 'utf8'), 'older\n');
    assert.equal(readFileSync(`${log}.3`, 'utf8'), 'oldest\n');
    assert.equal(statSync(log).size, 0);

    writeFileSync(go, '');
    assert.equal((await p.exited).code, 0);
    assert.equal(readFileSync(log, 'utf8'), 'after\n'); // no hole of 2001 NUL bytes before it
  });

  it('adopts a detached process left behind by a dead agent', async () => {
    const worker = join(dir, 'worker.mjs');
    const agent = join(dir, 'agent.mjs');
    writeFileSync(worker, 'setInterval(() => {}, 1000);\n');
    writeFileSync(
      agent,
      `import { spawn } from 'node:child_process';
       const c = spawn(process.execPath, [${JSON.stringify(worker)}], { detached: true, stdio: 'ignore' });
       console.log(c.pid);
       process.exit(0);\n`,
    );
    const pid = Number(execFileSync(process.execPath, [agent], { encoding: 'utf8' }).trim());
    strays.push(pid);
    const ticks = processStartTime(pid);
    assert.equal(typeof ticks, 'number');

    const p = adoptProcess(pid, pid, Date.now());
    assert.ok(p);
    assert.equal(p.startTicks, ticks);
    assert.equal(p.alive(), true);
    assert.equal(processGroupAlive(pid), true);

    process.kill(pid, 'SIGKILL');
    const info = await p.exited;
    assert.deepEqual(info, { code: null, signal: null, reason: 'exited while not supervised (exit status unknown)' });
    assert.equal(p.alive(), false);
    assert.equal(processStartTime(pid), undefined);
    assert.equal(processGroupAlive(pid), false);
    assert.equal(adoptProcess(pid, pid, Date.now()), undefined);
    assert.equal(typeof processStartTime(process.pid), 'number');
  });

  it('runs as the given user when the agent is root', { skip: process.getuid?.() !== 0 }, async () => {
    const p = run('id -u; id -g', 'user', { user: 'nobody' });
    assert.equal((await p.exited).code, 0);
    const passwd = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'));
    assert.ok(passwd);
    const [, , uid, gid] = passwd.split(':');
    assert.equal(readFileSync(join(dir, 'user/out.log'), 'utf8'), `${uid}\n${gid}\n`);

    const unknown = run('true', 'user2', { user: 'no-such-user-xyz' });
    assert.equal((await unknown.exited).reason, 'spawn failed: unknown user "no-such-user-xyz"');
  });
});
