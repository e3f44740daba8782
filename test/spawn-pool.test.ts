import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { processGroupAlive, processStartTime, startProcess, type RunningProcess } from '../src/agent/executor.js';
import { SpawnPool } from '../src/agent/spawn-pool.js';

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

describe('spawn pool', () => {
  let dir: string;
  let pool: SpawnPool;
  let started: RunningProcess[] = [];

  const run = async (script: string, name: string): Promise<RunningProcess> => {
    const p = await startProcess({ path: '/bin/sh', args: ['-c', script], env: ENV, logFile: join(dir, name, 'out.log') }, pool.spawn);
    started.push(p);
    return p;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'drover-spawn-pool-'));
  });
  afterEach(async () => {
    await Promise.all(started.map((p) => p.stop(0)));
    started = [];
    pool?.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs processes in their own group, logs to the file and reports each exit', async () => {
    pool = new SpawnPool(2);
    const procs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => run(`echo out-${i}; exit ${i}`, `many/${i}`)));
    for (const p of procs) {
      assert.ok(p.pid > 0);
      assert.equal(p.pgid, p.pid);
    }
    const exits = await Promise.all(procs.map((p) => p.exited));
    assert.deepEqual(
      exits.map((e) => e.reason),
      [0, 1, 2, 3, 4, 5].map((i) => `exited with code ${i}`),
    );
    for (let i = 0; i < 6; i++) assert.equal(readFileSync(join(dir, `many/${i}/out.log`), 'utf8'), `out-${i}\n`);
    assert.equal(pool.spawning, 0);
  });

  it('reports spawn errors as an exit', async () => {
    pool = new SpawnPool(1);
    const p = await startProcess({ path: '/no/such/bin', args: [], env: ENV, logFile: join(dir, 'enoent/out.log') }, pool.spawn);
    assert.equal(p.pid, 0);
    assert.deepEqual(await p.exited, { code: null, signal: null, reason: 'spawn ENOENT: /no/such/bin' });
  });

  it('stops a group with TERM, then KILL, through a spawned process', async () => {
    pool = new SpawnPool(1);
    const p = await run(`trap '' TERM; echo trapped; sleep 100 & wait`, 'stubborn');
    while (!readFileSync(join(dir, 'stubborn/out.log'), 'utf8').includes('trapped')) await sleep(10);
    const info = await p.stop(200);
    assert.equal(info.signal, 'SIGKILL');
    assert.equal(processGroupAlive(p.pgid), false);
  });

  it('still sees the children of a spawner thread that died stop', async () => {
    pool = new SpawnPool(1);
    const p = await run('exec sleep 100', 'orphaned');
    // Internal access on purpose: a thread dying (a bug, an out-of-memory) has no public trigger.
    const threads = (pool as unknown as { threads: { worker: Worker }[] }).threads;
    await threads[0]!.worker.terminate();
    assert.equal(p.alive(), true);
    assert.ok(processStartTime(p.pid) !== undefined);
    process.kill(p.pid, 'SIGKILL');
    const info = await p.exited;
    assert.equal(info.reason, 'exited after its spawner thread stopped (exit status unknown)');
    // and a new thread takes the next spawn
    const next = await run('exit 7', 'after-death');
    assert.equal((await next.exited).code, 7);
  });
});
