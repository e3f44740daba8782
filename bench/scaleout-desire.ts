// Desire throughput with 1 vs 3 control-plane replicas on one PostgreSQL schema: `drover serve
// --no-agent --mqtt none --store postgres://...?schema=<fresh>` child processes (one of them
// leads and converges), and `--connections` concurrent clients here POSTing
// `/v1/desired_lrp/desire` (JSON, a unique process_guid, 1 instance each) round-robin over the
// replicas for `--duration` seconds. Every write transaction on PostgreSQL takes one advisory
// lock (events are numbered in commit order), so replicas add API capacity, not write
// parallelism: the figure shows what the extra replicas cost or gain on this machine.
//
// The peer is Drover itself with one replica: each round measures 1 and 3 replicas back to
// back (alternating which goes first), on a fresh schema each, so both see the same load from
// the rest of the machine; the ratio is 3-replica / 1-replica throughput, per round and of the
// medians. After each measurement the stored desired LRPs are counted: every accepted desire
// must be there.
//
//   node dist/bench/scaleout-desire.js [--duration 5] [--connections 12] [--rounds 3]

import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import pg from 'pg';
import { packagePath } from '../src/package-root.js';
import { header, median, randomTag, ratio, removeDir, stopChild, tempDir } from './common.js';

const PG_BASE = process.env.DROVER_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const DROVER_BIN = packagePath('bin', 'drover');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

async function replica(store: string, id: string, dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(DROVER_BIN, ['serve', '--store', store, '--data-dir', dataDir, '--http', '127.0.0.1:0', '--no-agent', '--mqtt', 'none', '--replica-id', id, '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`replica ${id} did not start`)), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*drover is serving|drover is serving[^\n]*"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve((m[1] ?? m[2])!);
      }
    });
    child.once('exit', (code) => reject(new Error(`replica ${id} exited with ${code}`)));
  });
  child.stdout!.resume();
  return { child, url };
}

/** One statement on its own connection (in `schema` when given). */
async function query(text: string, schema?: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: PG_BASE, options: schema ? `-c search_path=${schema}` : undefined });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

interface Measurement {
  perSec: number;
  errors: number;
  p50: number;
  p99: number;
}

async function measure(replicas: number, seconds: number, connections: number): Promise<Measurement> {
  const schema = `drover_bench_so_${randomTag()}`;
  const store = `${PG_BASE}?schema=${schema}`;
  const dir = tempDir('scaleout');
  const procs: { child: ChildProcess; url: string }[] = [];
  try {
    procs.push(await replica(store, 'b1', dir)); // migrates
    procs.push(...(await Promise.all(Array.from({ length: replicas - 1 }, (_, i) => replica(store, `b${i + 2}`, dir)))));
    const tag = randomTag();
    let n = 0;
    let ok = 0;
    let errors = 0;
    const latencies: number[] = [];
    const end = Date.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < end) {
          const i = n++;
          const url = procs[i % procs.length]!.url;
          const body = JSON.stringify({
            desired_lrp: { process_guid: `bench-${tag}-${i}`, domain: 'bench', instances: 1, action: { run: { path: '/bin/true' } } },
          });
          const t0 = performance.now();
          try {
            const res = await fetch(`${url}/v1/desired_lrp/desire`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
            const json = (await res.json()) as { error?: unknown };
            if (res.status === 200 && !json.error) ok++;
            else errors++;
          } catch {
            errors++;
          }
          latencies.push(performance.now() - t0);
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    const stored = Number((await query('SELECT count(*) AS n FROM desired_lrps', schema)).rows[0].n);
    if (stored !== ok) throw new Error(`${ok} desires accepted but ${stored} stored`);
    return { perSec: ok / seconds, errors, p50: latencies[Math.floor(latencies.length * 0.5)] ?? 0, p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0 };
  } finally {
    await Promise.all(procs.map((p) => stopChild(p.child)));
    await query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    removeDir(dir);
  }
}

const seconds = Number(arg('duration', '5'));
const connections = Number(arg('connections', '12'));
const rounds = Number(arg('rounds', '3'));
header(`desire throughput on PostgreSQL, 1 vs 3 replicas (${connections} connections, ${seconds} s, ${rounds} round(s))`);
console.log(`${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
const one: Measurement[] = [];
const three: Measurement[] = [];
const show = (m: Measurement) => `${m.perSec.toFixed(0)} desires/s (p50 ${m.p50.toFixed(1)} ms, p99 ${m.p99.toFixed(1)} ms, ${m.errors} errors)`;
for (let r = 0; r < rounds; r++) {
  // alternate the order, so neither setting always runs on a warmer (or busier) machine
  for (const replicas of r % 2 ? [3, 1] : [1, 3]) (replicas === 1 ? one : three).push(await measure(replicas, seconds, connections));
  console.log(`round ${r + 1}: 1 replica ${show(one[r]!)}; 3 replicas ${show(three[r]!)}; ratio ${ratio(three[r]!.perSec, one[r]!.perSec)}`);
}
const summary = (ms: Measurement[]) => ({ perSec: median(ms.map((x) => x.perSec)), p50: median(ms.map((x) => x.p50)), p99: median(ms.map((x) => x.p99)), errors: ms.reduce((n, x) => n + x.errors, 0) });
const [m1, m3] = [summary(one), summary(three)];
console.log(`median: 1 replica ${show(m1)}`);
console.log(`median: 3 replicas ${show(m3)}`);
console.log(`3 replicas / 1 replica: ${ratio(m3.perSec, m1.perSec)} (load average now ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);
