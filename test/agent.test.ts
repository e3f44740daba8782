// The cell agent end to end: real OS processes, driven through the real BBS HTTP API (JSON),
// with the SQLite store in a temp dir. The control plane runs in-process (tests 1-4) or as
// `drover serve` / `drover agent` child processes (tests 5-6).
//
// Counting processes: every instance gets a marker in its environment (DROVER_AGENT_TEST,
// unique per test) and on its command line (`sh -c SCRIPT MARKER`, the marker being $0).
// The environment is inherited by everything an instance forks or execs, so scanning
// /proc/*/environ finds the whole tree (`exec sleep` loses the command line, not the
// environment). Zombies do not count: PID 1 here may reap orphans late or never.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { ControlPlane } from '../src/agent/control-plane.js';
import { killProcessGroups, processesMarked, waitFor } from './helpers.js';
import { SseStream } from './sse.js';
import { DROVER_BIN, droverCli, killCli, liveClis, type DroverCli as Cli } from './drover-cli.js';

const cli = (args: string[]) => droverCli(`drover ${args[0]}`, args);

const RUN = randomBytes(4).toString('hex');
const MARK_VAR = 'DROVER_AGENT_TEST';
const execFileP = promisify(execFile);

// ------------------------------------------------------------------------------ processes

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  mark: string;
  cellId: string;
  instanceGuid: string;
  index: string;
}


/** Live (non-zombie) processes whose environment carries a marker starting with `prefix`. */
function scan(prefix: string): Proc[] {
  return processesMarked(MARK_VAR, prefix).map(({ pid, ppid, pgid, env }) => ({
    pid,
    ppid,
    pgid,
    mark: env.get(MARK_VAR) ?? '',
    cellId: env.get('CELL_ID') ?? '',
    instanceGuid: env.get('INSTANCE_GUID') ?? '',
    index: env.get('INSTANCE_INDEX') ?? '',
  }));
}

/** The processes of exactly this marker. */
const procs = (mark: string): Proc[] => scan(mark).filter((p) => p.mark === mark);
/** Instance leaders (each instance leads its own process group). */
const leaders = (mark: string): Proc[] => procs(mark).filter((p) => p.pid === p.pgid);
/** True while some live process is in the group. */
const groupAlive = (pgid: number, mark: string): boolean => procs(mark).some((p) => p.pgid === pgid);

/** SIGKILLs every process carrying a marker with this prefix (their whole groups). */
function killMarked(prefix: string): void {
  killProcessGroups(scan(prefix));
}

async function killMarkedAndWait(prefix: string): Promise<void> {
  killMarked(prefix);
  await waitFor(() => (scan(prefix).length === 0 ? true : undefined), `no processes marked ${prefix}`, 5000);
}

// ------------------------------------------------------------------------------ waiting


// ------------------------------------------------------------------------------ BBS over HTTP

/** BBS JSON as it comes (snake_case). */
type Json = any;

async function bbs(url: string, path: string, body: object = {}): Promise<Json> {
  const res = await fetch(new URL(path, url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, `${path}: HTTP ${res.status}`);
  const json = (await res.json()) as Json;
  if (json.error) throw new Error(`${path}: ${json.error.type}: ${json.error.message}`);
  return json;
}

interface Actual {
  process_guid: string;
  index: number;
  instance_guid: string;
  cell_id: string;
  state: string;
  crash_count: number;
  crash_reason: string;
  since: number;
  stop_requested?: boolean;
}

/** The actual LRPs of one desired LRP, by index, from `actual_lrp_groups/list`. */
async function actuals(url: string, guid: string): Promise<Actual[]> {
  const res = await bbs(url, '/v1/actual_lrp_groups/list', {});
  return ((res.actual_lrp_groups ?? []) as Json[])
    .map((g) => g.instance ?? g.evacuating)
    .filter((a: Json) => a.process_guid === guid)
    .map((a: Json) => ({ ...a, index: a.index ?? 0, crash_count: a.crash_count ?? 0, crash_reason: a.crash_reason ?? '', since: Number(a.since ?? 0) }))
    .sort((x: Actual, y: Actual) => x.index - y.index);
}

function desiredLrp(guid: string, mark: string, script: string, instances: number, extra: object = {}): object {
  return {
    process_guid: guid,
    domain: 'agent-test',
    instances,
    env: [{ name: MARK_VAR, value: mark }],
    action: { run: { path: '/bin/sh', args: ['-c', script, mark] } },
    ...extra,
  };
}

const desire = (url: string, lrp: object) => bbs(url, '/v1/desired_lrp/desire', { desired_lrp: lrp });
const scale = (url: string, guid: string, instances: number) => bbs(url, '/v1/desired_lrp/update', { process_guid: guid, update: { instances } });
const removeLrp = (url: string, guid: string) => bbs(url, '/v1/desired_lrp/remove', { process_guid: guid });

/** Resolves once `n` instances are RUNNING (optionally: all on `cellId`), and returns them. */
function waitRunning(url: string, guid: string, n: number, timeoutMs = 8000, cellId?: string): Promise<Actual[]> {
  return waitFor(
    async () => {
      const list = await actuals(url, guid);
      const running = list.filter((a) => a.state === 'RUNNING' && (!cellId || a.cell_id === cellId));
      return list.length === n && running.length === n ? list : undefined;
    },
    `${n} RUNNING instances of ${guid}${cellId ? ` on ${cellId}` : ''}`,
    timeoutMs,
  );
}

// ------------------------------------------------------------------------------ fixtures

const dirs: string[] = [];
function tempDir(name: string): string {
  const d = mkdtempSync(join(tmpdir(), `drover-agent-${name}-`));
  dirs.push(d);
  return d;
}

function inProcess(dataDir: string, startWindowMs?: number): Promise<RunningDrover> {
  // no MQTT: the embedded broker's fixed port is not this suite's business
  return startDrover({ dataDir, agent: true, cellId: 'cell-a', http: '127.0.0.1:0', logLevel: 'silent', mqtt: 'none', ...(startWindowMs ? { startWindowMs } : {}) });
}





/** `drover serve` as a child process; resolves with its URL once it serves (agent started). */
async function serve(dataDir: string, extra: string[] = []): Promise<{ cli: Cli; url: string }> {
  const c = cli(['serve', '--data-dir', dataDir, '--http', '127.0.0.1:0', '--cell-id', 'cell-a', '--mqtt', 'none', '--log-level', 'info', ...extra]);
  const m = await c.line(/"url":"(http:\/\/127\.0\.0\.1:\d+)".*drover is serving|drover is serving.*"url":"(http:\/\/127\.0\.0\.1:\d+)"/);
  return { cli: c, url: (m[1] ?? m[2])! };
}

/** `drover agent` as a child process, once it has started (and so heartbeated). */
async function remoteAgent(url: string, cellId: string, dataDir: string): Promise<Cli> {
  const c = cli(['agent', '--api', url, '--cell-id', cellId, '--data-dir', dataDir, '--ttl-ms', '2000', '--log-level', 'info']);
  await c.line(/cell agent started/);
  return c;
}

/** Closes an in-process Drover first (so its agent restarts nothing), then kills what is left. */
async function cleanup(drover: RunningDrover, mark: string): Promise<void> {
  await drover.close();
  await killMarkedAndWait(mark);
}

after(async () => {
  // Whatever a failed test left: servers, agents, instances, directories.
  await Promise.all([...liveClis].map((c) => killCli(c)));
  killMarked(`agt-${RUN}`);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------ tests

describe('cell agent with real processes', () => {
  it('runs, restarts after SIGKILL, scales down without orphans, and removes', async () => {
    const mark = `agt-${RUN}-t1`;
    const guid = `t1-${RUN}`;
    const dir = tempDir('t1');
    const drover = await inProcess(dir);
    try {
      const url = drover.url;
      // each instance: the shell and two children in its group, all ignoring SIGTERM, so that
      // the children of a crashed leader take a while to stop (the agent KILLs them after 1 s)
      await desire(url, desiredLrp(guid, mark, "trap '' TERM; sleep 1000 & sleep 1000; wait", 3, { stop_grace_ms: 300 }));
      const running = await waitRunning(url, guid, 3);
      for (const a of running) {
        assert.equal(a.cell_id, 'cell-a');
        assert.ok(a.instance_guid, 'instance_guid set');
        assert.ok(a.since > 0, 'since set');
        assert.equal(a.crash_count, 0);
      }
      assert.equal(new Set(running.map((a) => a.instance_guid)).size, 3);
      await waitFor(() => (leaders(mark).length === 3 && procs(mark).length === 9 ? true : undefined), '3 instances of 3 processes each');
      // the OS processes are the instances the control plane knows of
      const byGuid = new Map(leaders(mark).map((p) => [p.instanceGuid, p]));
      for (const a of running) {
        const p = byGuid.get(a.instance_guid);
        assert.ok(p, `a process for ${a.instance_guid}`);
        assert.equal(p.index, String(a.index));
        assert.equal(p.cellId, 'cell-a');
        assert.ok(readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(mark), 'marker on the command line');
      }

      // kill -9 one instance: a crash, restarted at once on the same cell
      const victim = byGuid.get(running[1]!.instance_guid)!;
      process.kill(victim.pid, 'SIGKILL');
      const restarted = await waitFor(
        async () => {
          const a = (await actuals(url, guid))[1];
          return a && a.crash_count === 1 && a.state === 'RUNNING' ? a : undefined;
        },
        'index 1 RUNNING again after its crash',
      );
      assert.match(restarted.crash_reason, /SIGKILL/);
      assert.notEqual(restarted.instance_guid, running[1]!.instance_guid);
      await waitFor(() => (leaders(mark).length === 3 && procs(mark).length === 9 ? true : undefined), '3 instances again');
      assert.equal(groupAlive(victim.pgid, mark), false, "the killed instance's children were stopped too");
      const others = await actuals(url, guid);
      assert.equal(others[0]!.crash_count, 0);
      assert.equal(others[2]!.crash_count, 0);

      // scale to 1: indices 1 and 2 stop, with their whole process groups
      const before = new Map(leaders(mark).map((p) => [p.index, p]));
      await scale(url, guid, 1);
      await waitFor(async () => ((await actuals(url, guid)).length === 1 ? true : undefined), 'one actual LRP left');
      await waitFor(() => (procs(mark).length === 3 ? true : undefined), 'one instance of 3 processes left');
      assert.equal(groupAlive(before.get('1')!.pgid, mark), false, 'no orphans of index 1');
      assert.equal(groupAlive(before.get('2')!.pgid, mark), false, 'no orphans of index 2');
      assert.deepEqual(
        procs(mark).map((p) => p.pgid),
        [0, 0, 0].map(() => before.get('0')!.pgid),
        'what remains is index 0',
      );
      const [left] = await actuals(url, guid);
      assert.equal(left!.index, 0);
      assert.equal(left!.state, 'RUNNING');

      // remove: nothing left
      await removeLrp(url, guid);
      await waitFor(async () => ((await actuals(url, guid)).length === 0 ? true : undefined), 'no actual LRPs');
      await waitFor(() => (procs(mark).length === 0 ? true : undefined), 'no processes');
    } finally {
      await cleanup(drover, mark);
    }
  });

  it('restarts a crash loop three times at once, then backs off as CRASHED', async () => {
    const mark = `agt-${RUN}-t2`;
    const guid = `t2-${RUN}`;
    const drover = await inProcess(tempDir('t2'));
    try {
      const url = drover.url;
      const t0 = Date.now();
      await desire(url, desiredLrp(guid, mark, 'exit 3', 1));
      const crashed = await waitFor(
        async () => {
          const [a] = await actuals(url, guid);
          return a?.state === 'CRASHED' ? a : undefined;
        },
        'CRASHED',
        6000,
      );
      const took = Date.now() - t0;
      assert.equal(crashed.crash_count, 4, 'three immediate restarts, the fourth crash waits');
      assert.equal(crashed.crash_reason, 'exited with code 3');
      assert.equal(crashed.instance_guid ?? '', '');
      assert.equal(crashed.cell_id ?? '', '');
      // the back-off is 30 s: nothing happens for a while
      await sleep(2000);
      const [still] = await actuals(url, guid);
      assert.equal(still!.state, 'CRASHED');
      assert.equal(still!.crash_count, 4);
      assert.equal(still!.since, crashed.since);
      assert.equal(procs(mark).length, 0);
      console.log(`# crash loop reached CRASHED after ${took} ms`);

      await removeLrp(url, guid);
      await waitFor(async () => ((await actuals(url, guid)).length === 0 ? true : undefined), 'the CRASHED instance removed');
    } finally {
      await cleanup(drover, mark);
    }
  });

  it("kills an instance that ignores SIGTERM once the LRP's stop grace has passed", async () => {
    const mark = `agt-${RUN}-t3`;
    const guid = `t3-${RUN}`;
    const drover = await inProcess(tempDir('t3'));
    try {
      const url = drover.url;
      // SIG_IGN survives exec: the sleep ignores TERM too
      await desire(url, desiredLrp(guid, mark, "trap '' TERM; exec sleep 1000", 1, { stop_grace_ms: 500 }));
      const got = await bbs(url, '/v1/desired_lrps/get_by_process_guid.r2', { process_guid: guid });
      assert.equal(got.desired_lrp.stop_grace_ms, 500);
      await waitRunning(url, guid, 1);
      await waitFor(() => (procs(mark).length === 1 ? true : undefined), 'the instance process');
      const [p] = procs(mark);
      const sigIgn = readFileSync(`/proc/${p!.pid}/status`, 'utf8').match(/^SigIgn:\s*([0-9a-f]+)$/m)![1]!;
      assert.ok(BigInt(`0x${sigIgn}`) & (1n << 14n), 'the instance ignores SIGTERM (signal 15)');

      const t0 = Date.now();
      await removeLrp(url, guid);
      await waitFor(() => (procs(mark).length === 0 ? true : undefined), 'the instance killed', 3000, 20);
      const took = Date.now() - t0;
      console.log(`# SIGTERM-ignoring instance gone ${took} ms after remove (grace 500 ms)`);
      assert.ok(took >= 450, `it was given its grace (${took} ms)`);
      assert.ok(took < 2500, `killed soon after the 500 ms grace, not the 10 s default (${took} ms)`);
      await waitFor(async () => ((await actuals(url, guid)).length === 0 ? true : undefined), 'the actual LRP removed');
    } finally {
      await cleanup(drover, mark);
    }
  });

  it("writes an instance's stdout and stderr to its log file, which `drover logs` prints", async () => {
    const mark = `agt-${RUN}-t4`;
    const guid = `t4-${RUN}`;
    const dir = tempDir('t4');
    const drover = await inProcess(dir);
    try {
      const url = drover.url;
      const script = 'echo "to stdout $0 index=$INSTANCE_INDEX"; echo "to stderr $0 index=$INSTANCE_INDEX" >&2; exec sleep 1000';
      await desire(url, desiredLrp(guid, mark, script, 2));
      await waitRunning(url, guid, 2);
      for (const index of [0, 1]) {
        const file = join(dir, 'cells', 'cell-a', 'logs', guid, `${index}.log`);
        const text = await waitFor(() => {
          const t = existsSync(file) ? readFileSync(file, 'utf8') : '';
          return t.includes('to stdout') && t.includes('to stderr') ? t : undefined;
        }, `both lines in ${file}`);
        assert.equal(text, `to stdout ${mark} index=${index}\nto stderr ${mark} index=${index}\n`);
        const { stdout } = await execFileP(DROVER_BIN, ['logs', guid, String(index), '--data-dir', dir]);
        assert.equal(stdout, text);
      }
      await removeLrp(url, guid);
      await waitFor(() => (procs(mark).length === 0 ? true : undefined), 'no processes');
    } finally {
      await cleanup(drover, mark);
    }
  });

  it('moves the instances of a lost cell, and the cell stops its stale leftovers when it returns', async () => {
    const mark = `agt-${RUN}-t5`;
    const guid = `t5-${RUN}`;
    const dirA = tempDir('t5-serve');
    const dirB = tempDir('t5-agent');
    let server: Cli | undefined;
    let agentB: Cli | undefined;
    try {
      const s = await serve(dirA);
      server = s.cli;
      const url = s.url;
      agentB = await remoteAgent(url, 'cell-b', dirB);
      await waitFor(async () => {
        const cells = ((await bbs(url, '/v1/cells/list')).cells ?? []) as Json[];
        return cells.some((c) => c.cell_id === 'cell-a') && cells.some((c) => c.cell_id === 'cell-b') ? true : undefined;
      }, 'both cells registered');

      await desire(url, desiredLrp(guid, mark, 'exec sleep 1000', 4));
      const running = await waitRunning(url, guid, 4);
      const perCell = (list: Actual[], cell: string) => list.filter((a) => a.cell_id === cell).length;
      assert.equal(perCell(running, 'cell-a'), 2, 'spread: two on cell-a');
      assert.equal(perCell(running, 'cell-b'), 2, 'spread: two on cell-b');
      await waitFor(() => (procs(mark).length === 4 ? true : undefined), '4 processes');
      const ofCell = (cell: string) => procs(mark).filter((p) => p.cellId === cell);
      assert.equal(ofCell('cell-a').length, 2);
      assert.equal(ofCell('cell-b').length, 2);

      // cell-b's agent dies; its processes keep running (so that a restarted agent can adopt them)
      const leftovers = ofCell('cell-b').map((p) => p.pid);
      const t0 = Date.now();
      await killCli(agentB);
      agentB = undefined;
      await waitRunning(url, guid, 4, 2000 + 8000, 'cell-a');
      const moved = Date.now() - t0;
      console.log(`# instances of the lost cell RUNNING on cell-a ${moved} ms after its agent died (TTL 2000 ms)`);
      await waitFor(() => (ofCell('cell-a').length === 4 ? true : undefined), '4 processes on cell-a');
      assert.deepEqual(ofCell('cell-b').map((p) => p.pid).sort(), leftovers.sort(), "cell-b's leftovers still run while its agent is away");

      // one leftover dies meanwhile (its record is cleaned up), the other is still running
      process.kill(leftovers[0]!, 'SIGKILL');
      await waitFor(() => (ofCell('cell-b').length === 1 ? true : undefined), 'one leftover on cell-b');
      const records = join(dirB, 'cells', 'cell-b', 'instances.json');
      assert.equal(JSON.parse(readFileSync(records, 'utf8')).length, 2, 'cell-b still has records of both');

      // cell-b's agent is back: what ran there now runs elsewhere, so it stops its leftover
      agentB = await remoteAgent(url, 'cell-b', dirB);
      await waitFor(() => (ofCell('cell-b').length === 0 ? true : undefined), 'the leftover on cell-b stopped');
      await waitFor(() => (JSON.parse(readFileSync(records, 'utf8')).length === 0 ? true : undefined), "cell-b's records emptied");
      await sleep(1000);
      assert.equal(procs(mark).length, 4, 'exactly 4 processes in total');
      assert.equal(ofCell('cell-a').length, 4);
      const after = await waitRunning(url, guid, 4, 1000, 'cell-a');
      assert.deepEqual(after.map((a) => a.state), ['RUNNING', 'RUNNING', 'RUNNING', 'RUNNING']);

      await removeLrp(url, guid);
      await waitFor(() => (procs(mark).length === 0 ? true : undefined), 'no processes');
    } finally {
      if (agentB) await killCli(agentB);
      if (server) await killCli(server);
      await killMarkedAndWait(mark);
    }
  });

  it('after a SIGKILL of `drover serve`, the next run adopts its 20 instances instead of starting them twice', async () => {
    const mark = `agt-${RUN}-t6`;
    const guid = `t6-${RUN}`;
    const dir = tempDir('t6');
    let server: Cli | undefined;
    try {
      let s = await serve(dir, ['--cell-ttl-ms', '1000']);
      server = s.cli;
      const lrp = desiredLrp(guid, mark, 'exec sleep 1000', 20);
      await desire(s.url, lrp);
      const before = await waitRunning(s.url, guid, 20, 10_000);
      await waitFor(() => (procs(mark).length === 20 ? true : undefined), '20 processes');
      const pidsBefore = procs(mark)
        .map((p) => p.pid)
        .sort((a, b) => a - b);

      await killCli(server, 'SIGKILL');
      server = undefined;
      assert.equal(procs(mark).length, 20, 'the instances outlive the SIGKILLed server');

      // down for longer than the cell's TTL: the restarted control plane first sees cell-a as lost
      await sleep(1500);
      const t0 = Date.now();
      s = await serve(dir, ['--cell-ttl-ms', '1000']);
      server = s.cli;
      console.log(`# drover serve back ${Date.now() - t0} ms after its restart began`);
      // watch for a while (more than the agent's sync interval and several convergence passes)
      const deadline = Date.now() + 3000;
      let max = 0;
      while (Date.now() < deadline) {
        max = Math.max(max, procs(mark).length);
        await sleep(50);
      }
      assert.equal(max, 20, 'never more than 20 processes');
      const pidsAfter = procs(mark)
        .map((p) => p.pid)
        .sort((a, b) => a - b);
      assert.deepEqual(pidsAfter, pidsBefore, 'the same 20 processes: adopted, not restarted');
      // (their presence may now be SUSPECT: the planner marks them while the cell is gone and,
      // unlike BBS, leaves a suspect whose cell came back alone — see planner.test.ts)
      const after = await waitRunning(s.url, guid, 20, 2000);
      assert.deepEqual(
        after.map((a) => [a.index, a.instance_guid, a.cell_id, a.crash_count]),
        before.map((a) => [a.index, a.instance_guid, a.cell_id, 0]),
        'the same 20 RUNNING instances',
      );
      const { desired_lrps: desired } = await bbs(s.url, '/v1/desired_lrps/list.r2', {});
      const d = (desired as Json[]).find((x) => x.process_guid === guid);
      assert.ok(d, 'the desired LRP survived');
      assert.equal(d.instances, 20);
      assert.equal(d.action.run.path, '/bin/sh');
      assert.deepEqual(d.action.run.args, ['-c', 'exec sleep 1000', mark]);
      assert.deepEqual(d.env, [{ name: MARK_VAR, value: mark }]);

      // and a clean removal from the adopting server
      await removeLrp(s.url, guid);
      await waitFor(() => (procs(mark).length === 0 ? true : undefined), 'no processes');
      await waitFor(async () => ((await actuals(s.url, guid)).length === 0 ? true : undefined), 'no actual LRPs');
    } finally {
      if (server) await killCli(server);
      await killMarkedAndWait(mark);
    }
  });
});

describe("the start window ends once a process has settled (window 5 s)", () => {
  const WINDOW_MS = 5000;
  // node through a shell that waits for it: the shell sleeps from the start, so only the whole
  // tree tells whether the program is still loading
  const node = (code: string) => `${JSON.stringify(process.execPath)} -e ${JSON.stringify(code)}; exit $?`;

  it('reports a sleeping `sleep 1000` RUNNING long before the window ends', async () => {
    const mark = `agt-${RUN}-s1`;
    const guid = `s1-${RUN}`;
    const drover = await inProcess(tempDir('s1'), WINDOW_MS);
    try {
      const t0 = Date.now();
      await desire(drover.url, desiredLrp(guid, mark, 'exec sleep 1000', 1));
      await waitRunning(drover.url, guid, 1, WINDOW_MS);
      const took = Date.now() - t0;
      console.log(`# sleep 1000 RUNNING ${took} ms after its desire (window ${WINDOW_MS} ms)`);
      assert.ok(took < 2000, `RUNNING before the window would end (${took} ms)`);
    } finally {
      await cleanup(drover, mark);
    }
  });

  it('reports a program that burns CPU for a second RUNNING only once it has stopped', async () => {
    const mark = `agt-${RUN}-s2`;
    const guid = `s2-${RUN}`;
    const dir = tempDir('s2');
    const drover = await inProcess(dir, WINDOW_MS);
    try {
      const t0 = Date.now();
      const burn = "const t = Date.now(); while (Date.now() - t < 1000); console.log('burnt', Date.now()); setInterval(() => {}, 1e6)";
      await desire(drover.url, desiredLrp(guid, mark, node(burn), 1));
      const [running] = await waitRunning(drover.url, guid, 1, WINDOW_MS + 3000);
      const took = Date.now() - t0;
      const log = readFileSync(join(dir, 'cells', 'cell-a', 'logs', guid, '0.log'), 'utf8');
      const burnt = Number(/^burnt (\d+)$/m.exec(log)?.[1]);
      assert.ok(burnt > t0, `the program logged the end of its burn: ${JSON.stringify(log)}`);
      const since = running!.since / 1e6; // BBS JSON: unix ns
      console.log(`# CPU burner RUNNING ${Math.round(since - burnt)} ms after its burn ended, ${took} ms after its desire`);
      assert.ok(since >= burnt, `not RUNNING while it burnt CPU (RUNNING at ${since}, burn ended ${burnt})`);
      assert.ok(took < WINDOW_MS - 1000, `RUNNING soon after the burn, before the window would end (${took} ms)`);
      assert.equal(running!.crash_count, 0);
    } finally {
      await cleanup(drover, mark);
    }
  });

  it('reports a program that fails after ~50 ms of CPU as crashed, never RUNNING', async () => {
    const mark = `agt-${RUN}-s3`;
    const guid = `s3-${RUN}`;
    const drover = await inProcess(tempDir('s3'), WINDOW_MS);
    const events = await SseStream.open(`${drover.url}/v1/events/lrp_instances?format=json`);
    try {
      const t0 = Date.now();
      await desire(drover.url, desiredLrp(guid, mark, node('const t = Date.now(); while (Date.now() - t < 50); throw 1'), 1));
      // three immediate restarts, then CRASHED (the back-off): four starts, each a crash
      const seen = await events.until((e) => e.data.includes(guid) && JSON.parse(e.data).after?.state === 'CRASHED', 15_000);
      const took = Date.now() - t0;
      const mine = seen.filter((e) => e.data.includes(guid));
      assert.ok(mine.length > 4, 'the instance\'s events were read');
      assert.deepEqual(mine.filter((e) => e.data.includes('"RUNNING"')), [], 'no event shows the instance RUNNING');
      const [a] = await actuals(drover.url, guid);
      console.log(`# failing program CRASHED after 4 starts, ${took} ms after its desire (window ${WINDOW_MS} ms)`);
      assert.equal(a!.state, 'CRASHED');
      assert.equal(a!.crash_count, 4);
      assert.equal(a!.crash_reason, 'exited with code 1');
    } finally {
      events.close();
      await cleanup(drover, mark);
    }
  });
});

describe('cell routes the agent batches', () => {
  const CELL = 'cell-batch';
  const ik = (guid: string, cellId = CELL) => ({ instanceGuid: guid, cellId });
  const key = (processGuid: string, index: number) => ({ processGuid, index, domain: 'agent-test' });
  const byIndex = async (url: string, guid: string) => new Map((await actuals(url, guid)).map((a) => [a.index, a]));

  async function controlPlane(name: string): Promise<{ drover: RunningDrover; cp: ControlPlane }> {
    const drover = await startDrover({ dataDir: tempDir(name), agent: false, http: '127.0.0.1:0', logLevel: 'silent', mqtt: 'none' });
    const cp = new ControlPlane([drover.url]);
    // a live cell, so that convergence leaves its claims alone
    await cp.heartbeat({ cellId: CELL, site: '', sections: [], placementTags: [], ttlMs: 60_000 });
    return { drover, cp };
  }

  it('claims and starts many instances per call, answering each one as its own call would', async () => {
    const guid = `b1-${RUN}`;
    const { drover, cp } = await controlPlane('b1');
    try {
      await desire(drover.url, desiredLrp(guid, `agt-${RUN}-b1`, 'exit 0', 3));
      const claimed = await cp.claimMany([
        { key: key(guid, 0), instanceKey: ik('ig-0') },
        { key: key(guid, 1), instanceKey: ik('ig-1') },
        { key: key(`missing-${RUN}`, 0), instanceKey: ik('ig-m') },
        { key: key(guid, 0), instanceKey: ik('ig-other') },
      ]);
      assert.deepEqual(claimed.errors.map((e) => e?.type), [undefined, undefined, 'ResourceNotFound', 'ActualLRPCannotBeClaimed']);
      assert.deepEqual(claimed.desiredLrps.map((d) => d.processGuid), [guid], 'each desired LRP claimed, once');
      let now = await byIndex(drover.url, guid);
      assert.deepEqual([0, 1, 2].map((i) => [now.get(i)?.state, now.get(i)?.instance_guid ?? '']), [['CLAIMED', 'ig-0'], ['CLAIMED', 'ig-1'], ['UNCLAIMED', '']]);

      const netInfo = { address: '127.0.0.1', ports: [], instanceAddress: '127.0.0.1', preferredAddress: 'HOST' as const };
      const errors = await cp.startMany([
        { key: key(guid, 0), instanceKey: ik('ig-0'), netInfo },
        { key: key(guid, 1), instanceKey: ik('ig-wrong'), netInfo },
      ]);
      assert.equal(errors[0], undefined);
      assert.ok(errors[1], 'a start under another instance key is refused');
      now = await byIndex(drover.url, guid);
      assert.deepEqual([now.get(0)?.state, now.get(1)?.state], ['RUNNING', 'CLAIMED'], 'the refused item changed nothing');
    } finally {
      await drover.close();
    }
  });

  it("a crash's answer claims the immediate restart for the crashing cell, and only then", async () => {
    const guid = `b2-${RUN}`;
    const { drover, cp } = await controlPlane('b2');
    try {
      await desire(drover.url, desiredLrp(guid, `agt-${RUN}-b2`, 'exit 0', 2));
      assert.deepEqual((await cp.claimMany([{ key: key(guid, 0), instanceKey: ik('ig-a') }, { key: key(guid, 1), instanceKey: ik('ig-x') }])).errors, [undefined, undefined]);
      // three immediate restarts, each claimed in the crash's own answer
      let current = 'ig-a';
      for (const n of [1, 2, 3]) {
        const next = `ig-a${n}`;
        const desired = await cp.crash(key(guid, 0), ik(current), `exit ${n}`, ik(next));
        assert.equal(desired?.processGuid, guid, `crash ${n}: the answer carries what to run`);
        const a = (await byIndex(drover.url, guid)).get(0)!;
        assert.deepEqual([a.state, a.instance_guid, a.cell_id, a.crash_count], ['CLAIMED', next, CELL, n]);
        current = next;
      }
      // the 4th crash backs off: nothing to claim, the instance waits as CRASHED
      assert.equal(await cp.crash(key(guid, 0), ik(current), 'exit 4', ik('ig-a4')), undefined);
      assert.equal((await byIndex(drover.url, guid)).get(0)?.state, 'CRASHED');
      // a restart key naming another cell is not claimed: the instance waits for this cell
      assert.equal(await cp.crash(key(guid, 1), ik('ig-x'), 'exit 1', ik('ig-y', 'cell-elsewhere')), undefined);
      const other = (await byIndex(drover.url, guid)).get(1)!;
      assert.deepEqual([other.state, other.instance_guid ?? ''], ['UNCLAIMED', '']);
      // a refused crash claims nothing either
      await assert.rejects(cp.crash(key(guid, 1), ik('ig-x'), 'again', ik('ig-z')), /ActualLRPCannotBeCrashed/);
    } finally {
      await drover.close();
    }
  });
});
