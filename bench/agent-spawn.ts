// The cell agent against PM2 and a bare Node parent, on real processes (`sleep 1000`):
//   (a) start 200 instances: desire -> all 200 RUNNING (and -> all 200 processes exist),
//       vs PM2 (start -> 200 `online` in pm2.list) and a bare child_process.spawn loop
//       (-> 200 'spawn' events);
//   (b) crash -> restart: kill -9 a running instance, time until a new process for it exists
//       (a /proc scan every ~1 ms), 3 crashes per instance (the immediate-restart budget),
//       vs PM2 and a bare Node parent that respawns on 'exit';
//   (c) RSS of `drover serve` (a child process) with 1,000 instances RUNNING (2-7 s after,
//       and steady: 15-20 s after), vs the PM2 daemon's RSS with 200 processes.
//
//   node dist/bench/agent-spawn.js [--parts a,b,c] [--rounds 3] [--instances 200]
//        [--small-window 20] [--crash-instances 8] [--rss-instances 1000] [--inline-spawn]
//
// Every `sleep` carries a unique marker as a second argument (GNU sleep adds its arguments:
// `sleep 1000 0.000<digits>`), which is how processes are found and, at the end, cleaned up
// (found by marker, killed by pid). PM2 runs with PM2_HOME in a temp dir and its daemon is
// killed at the end. Drover runs in a child process (this file in --serve-drover mode, so
// the start window can be set) except for (c), which runs `bin/drover serve` (the installed command).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { startDrover } from '../src/drover.js';
import {
  childNamed,
  cmdline,
  cpuMs,
  freePort,
  header,
  killByMarker,
  listPids,
  median,
  ms,
  percentile,
  pidsWithMarker,
  postJson,
  randomTag,
  ratio,
  removeDir,
  ROOT,
  rssKb,
  sleep,
  sleepMarker,
  startChildServer,
  stopChild,
  tempDir,
  waitFor,
  type ChildServer,
} from './common.js';

const SELF = fileURLToPath(import.meta.url);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/** --inline-spawn: the embedded agent spawns on its own thread instead of through drover-spawner */
const SPAWN_MODE = process.argv.includes('--inline-spawn') ? 'inline' : 'helper';

// --------------------------------------------------------------------- child modes

async function serveDrover(dataDir: string, startWindowMs: number, spawnHelper: boolean): Promise<void> {
  const drover = await startDrover({ dataDir, http: '127.0.0.1:0', agent: true, logLevel: 'silent', startWindowMs, spawnHelper });
  process.stdout.write(`READY ${drover.url}\n`);
  process.once('SIGTERM', () => {
    void drover.close().then(() => process.exit(0));
  });
}

/** A bare supervisor: one `sleep` per marker (from the environment), respawned on 'exit'. */
function respawnParent(): void {
  const markers = (process.env.BENCH_MARKERS ?? '').split(',').filter(Boolean);
  let stopping = false;
  const children = new Set<ChildProcess>();
  const run = (marker: string) => {
    const child = spawn('/bin/sleep', ['1000', marker], { stdio: 'ignore', detached: true });
    children.add(child);
    child.once('exit', () => {
      children.delete(child);
      if (!stopping) run(marker);
    });
  };
  for (const m of markers) run(m);
  process.stdout.write('READY -\n');
  process.once('SIGTERM', () => {
    stopping = true;
    for (const c of children) c.kill('SIGKILL');
    setTimeout(() => process.exit(0), 100);
  });
}

// --------------------------------------------------------------------- markers, PM2

let markerBase = '';
let markerSeq = 0;
/** A fresh marker under this run's base (so cleanup by the base finds every process). */
function nextMarker(): string {
  return `${markerBase}${String(markerSeq++).padStart(4, '0')}`;
}
/** Live processes whose last argument is exactly `marker`. */
const withMarker = (marker: string) => pidsWithMarker(`${marker} `);

type Pm2 = typeof import('pm2');
let pm2: Pm2 | undefined;
let pm2Home = '';

function pm2Call<T>(fn: (cb: (err: unknown, value: T) => void) => void): Promise<T> {
  return new Promise((resolveValue, reject) => fn((err, value) => (err ? reject(err) : resolveValue(value))));
}

async function pm2Connect(): Promise<Pm2> {
  pm2Home = tempDir('pm2');
  process.env.PM2_HOME = pm2Home; // read when the module loads
  const mod = (await import('pm2')) as unknown as { default?: Pm2 } & Pm2;
  pm2 = mod.default ?? mod;
  await pm2Call<void>((cb) => pm2!.connect((err) => cb(err, undefined)));
  return pm2;
}

function pm2DaemonPid(): number {
  return Number(readFileSync(join(pm2Home, 'pm2.pid'), 'utf8').trim());
}

async function pm2List() {
  return pm2Call<import('pm2').ProcessDescription[]>((cb) => pm2!.list(cb));
}

async function pm2Delete(name: string, marker: string): Promise<void> {
  await pm2Call((cb) => pm2!.delete(name, cb)).catch(() => undefined);
  await killByMarker(marker);
}

async function pm2Shutdown(): Promise<void> {
  if (!pm2) return;
  let daemon = 0;
  try {
    daemon = pm2DaemonPid();
  } catch {
    // never started
  }
  await pm2Call((cb) => pm2!.killDaemon(cb)).catch(() => undefined);
  pm2.disconnect();
  if (daemon) {
    try {
      process.kill(daemon, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  removeDir(pm2Home);
}

// --------------------------------------------------------------------- Drover helpers

/**
 * Drover's supervisor is two processes: the daemon and drover-spawner, the small program its
 * agent starts processes through (started on first use). Both count, for CPU and for RSS.
 */
function droverTree(pid: number): number[] {
  const spawner = childNamed(pid, 'drover-spawner');
  return spawner === undefined ? [pid] : [pid, spawner];
}
const droverCpuMs = (pid: number) => droverTree(pid).reduce((sum, p) => sum + cpuMs(p), 0);
const droverRssKb = (pid: number) => droverTree(pid).reduce((sum, p) => sum + rssKb(p), 0);

interface JsonActual {
  process_guid?: string;
  index?: number;
  instance_guid?: string;
  state?: string;
}

async function actuals(url: string, processGuid: string): Promise<JsonActual[]> {
  const res = await postJson<{ actual_lrp_groups?: { instance?: JsonActual }[] }>(`${url}/v1/actual_lrp_groups/list_by_process_guid`, { process_guid: processGuid });
  return (res.actual_lrp_groups ?? []).map((g) => g.instance).filter((a): a is JsonActual => !!a);
}

async function desire(url: string, processGuid: string, instances: number, marker: string): Promise<void> {
  const res = await postJson<{ error?: unknown }>(`${url}/v1/desired_lrp/desire.r1`, {
    desired_lrp: { process_guid: processGuid, domain: 'bench', instances, action: { run: { path: '/bin/sleep', args: ['1000', marker] } } },
  });
  if (res.error) throw new Error(`desire refused: ${JSON.stringify(res.error)}`);
}

async function waitForCell(url: string): Promise<void> {
  await waitFor('the cell to register', async () => ((await postJson<{ cells?: unknown[] }>(`${url}/v1/cells/list`, {})).cells ?? []).length > 0, 30_000, 50);
}

// --------------------------------------------------------------------- (a) spawn

interface SpawnTiming {
  /** until every process exists (exec'd), as seen in /proc */
  existMs: number;
  /** until the supervisor says all are up (RUNNING / online / 'spawn' event) */
  readyMs: number;
  /** CPU time the supervisor process used meanwhile (Drover process / PM2 daemon / this process) */
  cpuMs: number;
}

/**
 * Two phases, so that polling costs the supervisors next to nothing: a /proc scan (in this
 * process) every 50 ms until all n processes exist, then the supervisor's own view (the API /
 * pm2.list) every 20 ms until it reports all n up.
 */
async function timeStart(t0: number, n: number, marker: string, timeoutMs: number, allUp: () => Promise<boolean>): Promise<{ existMs: number; readyMs: number }> {
  const deadline = t0 + timeoutMs;
  const scanEvery = n > 200 ? 250 : 50; // a scan reads every process's cmdline
  while (withMarker(marker).length < n) {
    if (performance.now() > deadline) throw new Error(`only ${withMarker(marker).length} of ${n} processes after ${timeoutMs} ms`);
    await sleep(scanEvery);
  }
  const existMs = performance.now() - t0;
  while (!(await allUp())) {
    if (performance.now() > deadline) throw new Error(`not all ${n} up after ${timeoutMs} ms`);
    await sleep(n > 200 ? 100 : 20);
  }
  return { existMs, readyMs: performance.now() - t0 };
}

async function spawnDrover(n: number, windowMs: number): Promise<SpawnTiming> {
  const dir = tempDir('spawn');
  const marker = nextMarker();
  let srv: ChildServer | undefined;
  try {
    srv = await startChildServer(SELF, ['--serve-drover', dir, String(windowMs), SPAWN_MODE]);
    await waitForCell(srv.url);
    const guid = `spawn-${randomTag(3)}`;
    const pid = srv.child.pid!;
    const cpu0 = droverCpuMs(pid);
    const t0 = performance.now();
    await desire(srv.url, guid, n, marker);
    const { existMs, readyMs } = await timeStart(t0, n, marker, 180_000, async () =>
      (await actuals(srv!.url, guid)).filter((a) => a.state === 'RUNNING').length >= n,
    );
    return { existMs, readyMs, cpuMs: droverCpuMs(pid) - cpu0 };
  } finally {
    if (srv) await srv.stop();
    await killByMarker(marker);
    removeDir(dir);
  }
}

async function spawnPm2(n: number): Promise<SpawnTiming & { daemonRssKb: number }> {
  const marker = nextMarker();
  const name = `spawn-${randomTag(3)}`;
  try {
    const daemon = pm2DaemonPid();
    const cpu0 = cpuMs(daemon);
    const t0 = performance.now();
    await pm2Call((cb) => pm2!.start({ name, script: '/bin/sleep', args: ['1000', marker], interpreter: 'none', exec_mode: 'fork', instances: n }, cb));
    const { existMs, readyMs } = await timeStart(t0, n, marker, 600_000, async () =>
      (await pm2List()).filter((p) => p.name === name && p.pm2_env?.status === 'online').length >= n,
    );
    const cpu = cpuMs(daemon) - cpu0;
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      samples.push(rssKb(daemon));
      await sleep(200);
    }
    return { existMs, readyMs, cpuMs: cpu, daemonRssKb: median(samples) };
  } finally {
    await pm2Delete(name, marker);
  }
}

async function spawnBare(n: number): Promise<SpawnTiming> {
  const marker = nextMarker();
  const children: ChildProcess[] = [];
  try {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const spawned: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const child = spawn('/bin/sleep', ['1000', marker], { stdio: 'ignore', detached: true });
      children.push(child);
      spawned.push(new Promise((resolveSpawn, reject) => child.once('spawn', resolveSpawn).once('error', reject)));
    }
    await Promise.all(spawned);
    const readyMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return { existMs: readyMs, readyMs, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await killByMarker(marker);
  }
}

// --------------------------------------------------------------------- (b) crash -> restart

/**
 * SIGKILLs the one process carrying `marker` and polls /proc (every ~1 ms) until a new
 * process with that marker has exec'd. Returns the latency in ms.
 */
async function killAndTimeRestart(marker: string): Promise<number> {
  const old = withMarker(marker);
  if (old.length !== 1) throw new Error(`expected one process for ${marker}, found ${old.length}`);
  const before = new Set(listPids());
  const t0 = performance.now();
  process.kill(old[0]!, 'SIGKILL');
  const deadline = t0 + 60_000;
  for (;;) {
    for (const pid of listPids()) {
      if (!before.has(pid) && cmdline(pid).endsWith(`${marker} `)) return performance.now() - t0;
    }
    if (performance.now() > deadline) throw new Error(`no restart of ${marker} within 60 s`);
    await sleep(1);
  }
}

interface CrashResult {
  samples: number[];
  p50: number;
  p99: number;
}

function crashResult(samples: number[]): CrashResult {
  return { samples, p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** Runs `crashes` rounds over every marker; `readyAgain` waits until the supervisor reports it up. */
async function crashRounds(markers: string[], crashes: number, readyAgain: (i: number) => Promise<void>): Promise<number[]> {
  const samples: number[] = [];
  for (let round = 0; round < crashes; round++) {
    for (let i = 0; i < markers.length; i++) {
      samples.push(await killAndTimeRestart(markers[i]!));
      await readyAgain(i);
      await sleep(100);
    }
  }
  return samples;
}

async function crashDrover(k: number, crashes: number): Promise<CrashResult> {
  const dir = tempDir('crash');
  const markers = Array.from({ length: k }, () => nextMarker());
  let srv: ChildServer | undefined;
  try {
    srv = await startChildServer(SELF, ['--serve-drover', dir, '200', SPAWN_MODE]);
    const url = srv.url;
    await waitForCell(url);
    const tag = randomTag(3);
    const guids = markers.map((_, i) => `crash-${tag}-${i}`);
    for (let i = 0; i < k; i++) await desire(url, guids[i]!, 1, markers[i]!);
    const running = async (i: number) => (await actuals(url, guids[i]!)).some((a) => a.state === 'RUNNING') && withMarker(markers[i]!).length === 1;
    for (let i = 0; i < k; i++) await waitFor(`instance ${i} RUNNING`, () => running(i), 60_000, 20);
    return crashResult(await crashRounds(markers, crashes, (i) => waitFor(`instance ${i} RUNNING again`, () => running(i), 60_000, 10)));
  } finally {
    if (srv) await srv.stop();
    for (const m of markers) await killByMarker(m);
    removeDir(dir);
  }
}

async function crashPm2(k: number, crashes: number): Promise<CrashResult> {
  const markers = Array.from({ length: k }, () => nextMarker());
  const tag = randomTag(3);
  const names = markers.map((_, i) => `crash-${tag}-${i}`);
  try {
    for (let i = 0; i < k; i++) {
      await pm2Call((cb) => pm2!.start({ name: names[i], script: '/bin/sleep', args: ['1000', markers[i]!], interpreter: 'none', exec_mode: 'fork' }, cb));
    }
    const online = async (i: number) => {
      const pids = withMarker(markers[i]!);
      const p = (await pm2List()).find((x) => x.name === names[i]);
      return pids.length === 1 && p?.pm2_env?.status === 'online' && p.pid === pids[0];
    };
    for (let i = 0; i < k; i++) await waitFor(`pm2 app ${i} online`, () => online(i), 60_000, 20);
    return crashResult(await crashRounds(markers, crashes, (i) => waitFor(`pm2 app ${i} online again`, () => online(i), 60_000, 10)));
  } finally {
    for (let i = 0; i < k; i++) await pm2Delete(names[i]!, markers[i]!);
  }
}

async function crashBare(k: number, crashes: number): Promise<CrashResult> {
  const markers = Array.from({ length: k }, () => nextMarker());
  let parent: ChildServer | undefined;
  try {
    parent = await startChildServer(SELF, ['--respawn-parent'], 30_000, { BENCH_MARKERS: markers.join(',') });
    for (let i = 0; i < k; i++) await waitFor(`bare instance ${i}`, () => withMarker(markers[i]!).length === 1, 30_000, 10);
    return crashResult(await crashRounds(markers, crashes, async () => undefined));
  } finally {
    if (parent) await parent.stop();
    for (const m of markers) await killByMarker(m);
  }
}

// --------------------------------------------------------------------- (c) RSS

interface RssResult {
  instances: number;
  idleRssKb: number;
  rssKb: number;
  /** once the start's work is over (the SQLite checkpoint thread ends after 10 quiet seconds) */
  steadyRssKb: number;
  hwmKb: number;
  allRunningMs: number;
}

/** after all are RUNNING, when the steady-state samples start */
const STEADY_AFTER_MS = 15_000;

function hwmKb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

async function rssDrover(n: number): Promise<RssResult> {
  const dir = tempDir('rss');
  const marker = nextMarker();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(join(ROOT, 'bin', 'drover'), ['serve', '--data-dir', dir, '--http', `127.0.0.1:${port}`, '--log-level', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await waitFor('drover serve to answer', async () => {
      try {
        return (await postJson<{ available?: boolean }>(`${url}/v1/ping`, {})).available === true;
      } catch {
        return false;
      }
    }, 30_000, 50);
    await waitForCell(url);
    await sleep(1000);
    const idleRssKb = droverRssKb(child.pid!);
    const guid = `rss-${randomTag(3)}`;
    const t0 = performance.now();
    await desire(url, guid, n, marker);
    const { readyMs: allRunningMs } = await timeStart(t0, n, marker, 600_000, async () => (await actuals(url, guid)).filter((a) => a.state === 'RUNNING').length >= n);
    const runningAt = performance.now();
    const sampleRss = async () => {
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        samples.push(droverRssKb(child.pid!));
        await sleep(1000);
      }
      return median(samples);
    };
    await sleep(2000); // let the post-start syncs settle
    const rss = await sampleRss();
    await sleep(Math.max(0, STEADY_AFTER_MS - (performance.now() - runningAt)));
    const steadyRssKb = await sampleRss();
    return { instances: n, idleRssKb, rssKb: rss, steadyRssKb, hwmKb: hwmKb(child.pid!), allRunningMs };
  } finally {
    await stopChild(child);
    await killByMarker(marker);
    removeDir(dir);
  }
}

// --------------------------------------------------------------------- main

export async function main(): Promise<void> {
  const parts = new Set(arg('parts', 'a,b,c').split(','));
  const rounds = Number(arg('rounds', '3'));
  const n = Number(arg('instances', '200'));
  const smallWindow = Number(arg('small-window', '20'));
  const crashK = Number(arg('crash-instances', '8'));
  const rssN = Number(arg('rss-instances', '1000'));
  markerBase = sleepMarker();
  const crashes = 3; // the immediate-restart budget of one instance (BBS: 3)
  let pm2DaemonRss: number[] = [];
  try {
    await pm2Connect();
    const pm2Idle = rssKb(pm2DaemonPid());

    if (parts.has('a')) {
      const dDefault: SpawnTiming[] = [];
      const dSmall: SpawnTiming[] = [];
      const p: SpawnTiming[] = [];
      const b: SpawnTiming[] = [];
      for (let r = 0; r < rounds; r++) {
        // alternate which window goes first, so neither always follows the other's cleanup
        let d1: SpawnTiming;
        let d2: SpawnTiming;
        if (r % 2 === 0) {
          d1 = await spawnDrover(n, 200);
          d2 = await spawnDrover(n, smallWindow);
        } else {
          d2 = await spawnDrover(n, smallWindow);
          d1 = await spawnDrover(n, 200);
        }
        const pr = await spawnPm2(n);
        const br = await spawnBare(n);
        const cpu = (t: SpawnTiming) => `cpu ${ms(t.cpuMs)}`;
        console.log(
          `round ${r + 1}: Drover(window 200 ms) exist ${ms(d1.existMs)} RUNNING ${ms(d1.readyMs)} ${cpu(d1)} | Drover(window ${smallWindow} ms) exist ${ms(d2.existMs)} RUNNING ${ms(d2.readyMs)} ${cpu(d2)} | PM2 exist ${ms(pr.existMs)} online ${ms(pr.readyMs)} ${cpu(pr)} (daemon RSS ${(pr.daemonRssKb / 1024).toFixed(1)} MiB) | bare spawn ${ms(br.readyMs)} ${cpu(br)} | load ${loadavg()[0]!.toFixed(1)}`,
        );
        dDefault.push(d1);
        dSmall.push(d2);
        p.push(pr);
        b.push(br);
        pm2DaemonRss.push(pr.daemonRssKb);
      }
      const med = (xs: SpawnTiming[], k: keyof SpawnTiming) => median(xs.map((x) => x[k]));
      const pm2Ready = med(p, 'readyMs');
      const bare = med(b, 'readyMs');
      header(`(a) start ${n} x sleep 1000 (medians of ${rounds})`);
      for (const [name, xs] of [
        ['Drover, start window 200 ms (default)', dDefault],
        [`Drover, start window ${smallWindow} ms`, dSmall],
      ] as const) {
        const ready = med(xs, 'readyMs');
        console.log(
          `${name.padEnd(40)} all RUNNING ${ms(ready).padStart(9)} (all processes exist ${ms(med(xs, 'existMs'))}; supervisor CPU ${ms(med(xs, 'cpuMs'))})  vs PM2 ${ratio(ready, pm2Ready)} (target <= 0.5x: ${ready <= 0.5 * pm2Ready ? 'met' : 'NOT met'})  vs bare ${ratio(ready, bare)} (target <= 2x: ${ready <= 2 * bare ? 'met' : 'NOT met'})`,
        );
      }
      console.log(`${'PM2 (instances: n, fork, interpreter none)'.padEnd(40)} all online  ${ms(pm2Ready).padStart(9)} (all processes exist ${ms(med(p, 'existMs'))}; daemon CPU ${ms(med(p, 'cpuMs'))})`);
      console.log(`${'bare child_process.spawn loop'.padEnd(40)} all 'spawn' ${ms(bare).padStart(9)} (CPU ${ms(med(b, 'cpuMs'))})`);
      const dCpu = med(dDefault, 'cpuMs');
      console.log(`supervisor CPU per instance: Drover ${ms(dCpu / n)}, PM2 ${ms(med(p, 'cpuMs') / n)}, bare ${ms(med(b, 'cpuMs') / n)}`);
    }

    if (parts.has('b')) {
      const d = await crashDrover(crashK, crashes);
      const p = await crashPm2(crashK, crashes);
      const b = await crashBare(crashK, crashes);
      header(`(b) kill -9 -> new process exists (${crashK} instances x ${crashes} crashes = ${d.samples.length} samples each)`);
      for (const [name, r] of [
        ['Drover', d],
        ['PM2', p],
        ['bare respawn-on-exit parent', b],
      ] as const) {
        console.log(`${name.padEnd(30)} p50 ${ms(r.p50).padStart(9)}  p99 ${ms(r.p99).padStart(9)}  (min ${ms(Math.min(...r.samples))}, max ${ms(Math.max(...r.samples))})`);
      }
      console.log(`Drover p50 vs PM2 p50: ${ratio(d.p50, p.p50)} (target <= 1x: ${d.p50 <= p.p50 ? 'met' : 'NOT met'}); vs bare ${ratio(d.p50, b.p50)}`);
    }

    if (parts.has('c')) {
      if (pm2DaemonRss.length === 0) {
        // (a) did not run: measure the PM2 daemon with n processes once.
        pm2DaemonRss = [(await spawnPm2(n)).daemonRssKb];
      }
      const r = await rssDrover(rssN);
      const pm2Rss = median(pm2DaemonRss);
      // The same count under PM2, for a like-for-like figure (the target compares with 200).
      const pm2Same = rssN === n ? undefined : await spawnPm2(rssN);
      header(`(c) RSS`);
      console.log(
        `drover serve with ${r.instances} instances RUNNING: VmRSS ${(r.rssKb / 1024).toFixed(1)} MiB (idle before desire ${(r.idleRssKb / 1024).toFixed(1)} MiB, peak VmHWM ${(r.hwmKb / 1024).toFixed(1)} MiB); all ${r.instances} RUNNING after ${ms(r.allRunningMs)}`,
      );
      console.log(`drover serve, steady (from ${STEADY_AFTER_MS / 1000} s after all RUNNING): VmRSS ${(r.steadyRssKb / 1024).toFixed(1)} MiB`);
      console.log(`PM2 daemon with ${n} processes online: VmRSS ${(pm2Rss / 1024).toFixed(1)} MiB (idle ${(pm2Idle / 1024).toFixed(1)} MiB)`);
      if (pm2Same) {
        console.log(`PM2 daemon with ${rssN} processes online: VmRSS ${(pm2Same.daemonRssKb / 1024).toFixed(1)} MiB (all online after ${ms(pm2Same.readyMs)})`);
      }
      console.log(`ratio Drover(${r.instances}) / PM2(${n}): ${ratio(r.rssKb, pm2Rss)} (target <= 1x: ${r.rssKb <= pm2Rss ? 'met' : 'NOT met'})`);
      console.log(`ratio Drover(${r.instances}), steady / PM2(${n}): ${ratio(r.steadyRssKb, pm2Rss)}`);
      if (pm2Same) console.log(`ratio Drover(${rssN}) / PM2(${rssN}): ${ratio(r.rssKb, pm2Same.daemonRssKb)}`);
    }
  } finally {
    await pm2Shutdown();
    const left = await killByMarker(markerBase);
    if (left) console.log(`cleanup: killed ${left} leftover marked processes`);
  }
}

const mode = process.argv[2];
if (mode === '--serve-drover') await serveDrover(process.argv[3]!, Number(process.argv[4]), process.argv[5] !== 'inline');
else if (mode === '--respawn-parent') respawnParent();
else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
  process.exit(0); // the PM2 client may keep handles open
}
