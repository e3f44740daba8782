// Desire throughput: autocannon POSTs `/v1/desired_lrp/desire.r1` (JSON) with a unique
// process_guid per request, 1 instance each, 10 connections, ~5 s, against Drover (agent off,
// default SQLite store, default convergence loop — as `drover serve --no-agent` runs), and
// against a bare Fastify hello-world POST route with the same autocannon settings and bodies.
//
//   node dist/bench/bbs-desire.js [--rounds 3] [--duration 5] [--connections 10]
//
// Each server runs in a child process (this file in --serve-* mode); autocannon runs here, so
// the load generator and the server each have one of the two cores. Every round starts a fresh
// Drover (empty store) and runs Drover and the peer back to back; medians over the rounds.

import { fileURLToPath } from 'node:url';
import type { AutocannonResult } from 'autocannon';
import Fastify from 'fastify';
import { loadavg } from 'node:os';
import { startDrover } from '../src/drover.js';
import { cpuMs, header, median, postJson, randomTag, ratio, removeDir, startChildServer, tempDir, type ChildServer } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const DESIRE_PATH = '/v1/desired_lrp/desire.r1';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

async function serveDrover(dataDir: string, converge: boolean): Promise<void> {
  const drover = await startDrover({ dataDir, http: '127.0.0.1:0', agent: false, logLevel: 'silent' });
  // Diagnostic only: without the convergence loop (no placement, no restarts) — to show its share.
  if (!converge) drover.convergence.stop();
  process.stdout.write(`READY ${drover.url}\n`);
  process.once('SIGTERM', () => {
    void drover.close().then(() => process.exit(0));
  });
}

async function serveBare(): Promise<void> {
  const app = Fastify({ logger: false });
  app.post(DESIRE_PATH, async () => ({ hello: 'world' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  process.stdout.write(`READY http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}\n`);
  process.once('SIGTERM', () => {
    void app.close().then(() => process.exit(0));
  });
}

interface Load {
  rps: number;
  /** server CPU time (user + system) per request, in ms */
  cpuPerReqMs: number;
  p50: number;
  p99: number;
  total: number;
  /** answers whose body was not the expected success */
  failed: number;
  errors: number;
}

/** One autocannon run; every request carries a new process_guid. */
async function load(server: ChildServer, tag: string, durationS: number, connections: number, ok: (body: string) => boolean): Promise<Load> {
  const url = server.url;
  const cpu0 = cpuMs(server.child.pid!);
  let n = 0;
  let failed = 0;
  let firstFailure = '';
  const { default: autocannon } = await import('autocannon'); // not loaded by the server children
  const result: AutocannonResult = await autocannon({
    url,
    connections,
    duration: durationS,
    requests: [
      {
        method: 'POST',
        path: DESIRE_PATH,
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({
          ...req,
          body: JSON.stringify({
            desired_lrp: {
              process_guid: `${tag}-${n++}`,
              domain: 'bench',
              instances: 1,
              action: { run: { path: '/bin/sleep', args: ['1000'] } },
            },
          }),
        }),
        onResponse: (_status, body) => {
          if (!ok(body)) {
            failed++;
            firstFailure ||= body;
          }
        },
      },
    ],
  });
  if (firstFailure) console.log(`  first failed answer: ${firstFailure.slice(0, 200)}`);
  return {
    rps: result.requests.total / durationS,
    cpuPerReqMs: (cpuMs(server.child.pid!) - cpu0) / Math.max(1, result.requests.total),
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    failed,
    errors: result.errors + result.timeouts + result.non2xx,
  };
}

export interface DesireResult {
  drover: Load[];
  bare: Load[];
  droverRps: number;
  bareRps: number;
  ratio: number;
}

export async function main(): Promise<DesireResult> {
  const rounds = Number(arg('rounds', '3'));
  const duration = Number(arg('duration', '5'));
  const connections = Number(arg('connections', '10'));
  const droverRuns: Load[] = [];
  const bareRuns: Load[] = [];
  let bare: ChildServer | undefined;
  try {
    bare = await startChildServer(SELF, ['--serve-bare']);
    for (let round = 0; round < rounds; round++) {
      const dir = tempDir('desire');
      let drover: ChildServer | undefined;
      try {
        drover = await startChildServer(SELF, ['--serve-drover', dir]);
        const tag = `d${randomTag(3)}`;
        await load(drover, `${tag}-warm`, 1, connections, () => true); // JIT warm-up
        await load(bare!, `${tag}-warm`, 1, connections, () => true);
        const d = await load(drover, tag, duration, connections, (body) => body === '{}');
        const b = await load(bare!, tag, duration, connections, (body) => body === '{"hello":"world"}');
        // The store holds what the API acknowledged: warm-up + measured desires, one UNCLAIMED instance each.
        const listed = await postJson<{ desired_lrps?: unknown[] }>(`${drover.url}/v1/desired_lrps/list`, { domain: 'bench' });
        const acked = d.total - d.failed;
        console.log(
          `round ${round + 1} (load ${loadavg()[0]!.toFixed(1)}): Drover ${d.rps.toFixed(0)} req/s (server CPU ${d.cpuPerReqMs.toFixed(2)} ms/req, p50 ${d.p50} ms, p99 ${d.p99} ms, ${d.failed} refused, ${d.errors} errors; ${listed.desired_lrps?.length ?? 0} desired LRPs stored, >= ${acked} expected)` +
            `  |  bare Fastify ${b.rps.toFixed(0)} req/s (server CPU ${b.cpuPerReqMs.toFixed(3)} ms/req, p50 ${b.p50} ms, p99 ${b.p99} ms)  |  ratio ${ratio(d.rps, b.rps)}`,
        );
        droverRuns.push(d);
        bareRuns.push(b);
      } finally {
        await drover?.stop();
        removeDir(dir);
      }
    }
  } finally {
    await bare?.stop();
  }
  // Diagnostic: one more round with Drover's convergence loop stopped, to show its share.
  let noConverge: Load | undefined;
  if (arg('diagnostic', 'yes') !== 'no') {
    const dir = tempDir('desire');
    let drover: ChildServer | undefined;
    try {
      drover = await startChildServer(SELF, ['--serve-drover', dir, '--no-converge']);
      const tag = `n${randomTag(3)}`;
      await load(drover, `${tag}-warm`, 1, connections, () => true);
      noConverge = await load(drover, tag, duration, connections, (body) => body === '{}');
    } finally {
      await drover?.stop();
      removeDir(dir);
    }
  }
  const droverRps = median(droverRuns.map((r) => r.rps));
  const bareRps = median(bareRuns.map((r) => r.rps));
  header(`BBS desire throughput (medians of ${rounds} rounds, ${duration} s, ${connections} connections)`);
  console.log(`Drover desire.r1 (SQLite, agent off): ${droverRps.toFixed(0)} req/s, p50 latency ${median(droverRuns.map((r) => r.p50))} ms, server CPU ${median(droverRuns.map((r) => r.cpuPerReqMs)).toFixed(2)} ms/req`);
  console.log(`peer: bare Fastify POST:              ${bareRps.toFixed(0)} req/s, p50 latency ${median(bareRuns.map((r) => r.p50))} ms, server CPU ${median(bareRuns.map((r) => r.cpuPerReqMs)).toFixed(3)} ms/req`);
  console.log(`ratio Drover / bare: ${ratio(droverRps, bareRps)}  (target >= 0.25x: ${droverRps / bareRps >= 0.25 ? 'met' : 'NOT met'})`);
  if (noConverge) {
    console.log(
      `diagnostic, one round: Drover with its convergence loop stopped: ${noConverge.rps.toFixed(0)} req/s, server CPU ${noConverge.cpuPerReqMs.toFixed(2)} ms/req (${ratio(noConverge.rps, bareRps)} of bare)`,
    );
  }
  return { drover: droverRuns, bare: bareRuns, droverRps, bareRps, ratio: droverRps / bareRps };
}

const mode = process.argv[2];
if (mode === '--serve-drover') await serveDrover(process.argv[3]!, process.argv[4] !== '--no-converge');
else if (mode === '--serve-bare') await serveBare();
else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
