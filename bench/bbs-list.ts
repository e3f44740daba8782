// BBS list at scale: 100k ActualLRPs (1,000 desired LRPs x 100 instances, all RUNNING on one
// live cell) fetched with POST /v1/actual_lrp_groups/list, in JSON and in protobuf, timed from
// sending the request to a fully decoded body in the client, and to the last byte of the body
// (the server's latency, on which the "list <= 1 s" target is judged). Peer, same run: a bare
// Fastify server answering the same POST with a pre-serialized JSON body of the same bytes.
// The primary figures decode as a BBS client does, with a generic decoder (JSON.parse, or
// protobufjs's decode of the BBS message); decoding into Drover's internal shape with its
// own codec (as Drover's agent does) is a secondary figure.
//
//   node dist/bench/bbs-list.js [--store sqlite|postgres|both] [--lrps 1000] [--instances 100] [--runs 5]
//
// Each server runs in its own child process (this file in --serve-* mode), so the client and
// the server each have a core. The seed goes straight through the store's public transaction
// API (tx.insertActualLrp), in transactions of 10,000 rows, before the timing starts; the
// convergence interval is set to an hour so no pass runs during the timed requests (the cost
// of one pass over the same 100k is measured separately, in the server, and printed).

import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import pg from 'pg';
import Fastify from 'fastify';
import { startDrover } from '../src/drover.js';
import { bbsProtoRoot, decodeMessage, PROTOBUF_CONTENT_TYPE, JSON_CONTENT_TYPE } from '../src/api/bbs/codec.js';
import { ActualLrpList } from '../src/api/bbs/list-stream.js';
import type { PackedActualLrps } from '../src/store/packed-actual-lrps.js';
import { validateDesiredLrp } from '../src/model/validate.js';
import { convergeOnce } from '../src/converge/loop.js';
import { cpuMs, header, median, ms, randomTag, ratio, removeDir, roomyLiveCell, runningActualLrp, startChildServer, tempDir, type ChildServer } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const PG_BASE = process.env.DROVER_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const LIST_PATH = '/v1/actual_lrp_groups/list';
const RESPONSE_TYPE = 'models.ActualLRPGroupsResponse';
const CELL = 'bench-cell';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

// ------------------------------------------------------------------ server: Drover

async function serveDrover(store: string, dataDir: string, lrps: number, instances: number): Promise<void> {
  const drover = await startDrover({ dataDir, store, http: '127.0.0.1:0', agent: false, logLevel: 'silent', convergeIntervalMs: 3_600_000 });
  const { ctx } = drover;
  const now = Date.now();
  const t0 = performance.now();
  await ctx.store.transaction(async (tx) => {
    await tx.upsertCell(roomyLiveCell(CELL, now));
    for (let l = 0; l < lrps; l++) {
      const d = validateDesiredLrp({
        processGuid: `bench-${String(l).padStart(5, '0')}`,
        domain: 'bench',
        instances,
        action: { run: { path: '/bin/sleep', args: ['1000'], dir: '', env: [], user: '' } },
        routes: { 'cf-router': [{ hostnames: [`app-${l}.example.com`], port: 8080 }] },
      });
      d.modificationTag = { epoch: randomUUID(), index: 0 };
      await tx.insertDesiredLrp(d);
    }
  });
  const BATCH = 10_000;
  const total = lrps * instances;
  for (let start = 0; start < total; start += BATCH) {
    await ctx.store.transaction(async (tx) => {
      for (let n = start; n < Math.min(total, start + BATCH); n++) {
        const l = Math.floor(n / instances);
        const index = n % instances;
        await tx.insertActualLrp(runningActualLrp(`bench-${String(l).padStart(5, '0')}`, index, CELL, n, now));
      }
    });
  }
  const seedMs = performance.now() - t0;

  // Where the server's time goes, measured in-process in CPU time (median of 3), so that other
  // work on the machine does not count: the store read of every page, then each encoding of
  // those rows into the streamed body (read to its end).
  const storeMs: number[] = [];
  const jsonMs: number[] = [];
  const protoMs: number[] = [];
  let bytes = { json: 0, proto: 0 };
  for (let i = 0; i < 3; i++) {
    let t = processCpuMs();
    const pages: PackedActualLrps[] = [];
    for await (const page of ctx.store.pagesOfActualLrps({})) pages.push(page);
    storeMs.push(processCpuMs() - t);
    t = processCpuMs();
    const j = await streamedBytes(pages, JSON_CONTENT_TYPE);
    jsonMs.push(processCpuMs() - t);
    t = processCpuMs();
    const p = await streamedBytes(pages, PROTOBUF_CONTENT_TYPE);
    protoMs.push(processCpuMs() - t);
    bytes = { json: j, proto: p };
  }
  // One convergence pass over the same state (steady: no actions), for the record.
  const passes: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await convergeOnce(ctx);
    passes.push(r.snapshotMs + r.planMs + r.applyMs);
  }
  const info = { seedMs, storeMs: median(storeMs), jsonEncodeMs: median(jsonMs), protoEncodeMs: median(protoMs), bytes, convergePassMs: median(passes) };
  process.stdout.write(`INFO ${JSON.stringify(info)}\nREADY ${drover.url}\n`);
  process.once('SIGTERM', () => {
    void drover.close().then(() => process.exit(0));
  });
}

/** CPU time (user + system) of this process so far, in ms */
function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** How many bytes the list route streams for these pages (encoded, not kept). */
async function streamedBytes(pages: PackedActualLrps[], contentType: string): Promise<number> {
  async function* replay() {
    yield* pages;
  }
  const { body } = await new ActualLrpList('groups', replay()).open(contentType);
  let n = 0;
  for await (const chunk of body) n += (chunk as Buffer).length;
  return n;
}

// ------------------------------------------------------------------ server: bare peer

async function serveBare(bodyFile: string): Promise<void> {
  const body = readFileSync(bodyFile);
  const app = Fastify({ logger: false });
  app.post(LIST_PATH, (_req, reply) => reply.type(JSON_CONTENT_TYPE).send(body));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
  process.once('SIGTERM', () => {
    void app.close().then(() => process.exit(0));
  });
}

// ------------------------------------------------------------------ client

interface Timing {
  /** request sent -> first body byte received */
  firstByteMs: number;
  /** request sent -> last body byte received: the server's latency for the whole list */
  lastByteMs: number;
  decodeMs: number;
  /** request sent -> body decoded (the primary figure since the second round) */
  totalMs: number;
  bytes: number;
  count: number;
  /** CPU time the server process used for the request (/proc, 10 ms ticks): its cost, whatever the load */
  serverCpuMs: number;
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** POST with node:http (cheaper than fetch for a large body); resolves with the whole body. */
function post(url: string, contentType: string, body: Buffer, onFirstByte = () => {}): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const req = http.request(url, { method: 'POST', agent: keepAlive, headers: { 'content-type': contentType, 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.once('data', onFirstByte);
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveBody(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function fetchOnce(url: string, serverPid: number, contentType: string, decode: (body: Buffer) => number): Promise<Timing> {
  const cpu0 = cpuMs(serverPid);
  const t0 = performance.now();
  let firstByte = 0;
  const body = await post(url + LIST_PATH, contentType, Buffer.from(contentType === JSON_CONTENT_TYPE ? '{}' : ''), () => (firstByte = performance.now()));
  const t1 = performance.now();
  const serverCpuMs = cpuMs(serverPid) - cpu0;
  const count = decode(body);
  const t2 = performance.now();
  return { firstByteMs: firstByte - t0, lastByteMs: t1 - t0, decodeMs: t2 - t1, totalMs: t2 - t0, bytes: body.length, count, serverCpuMs };
}

interface Variant {
  url: string;
  serverPid: number;
  contentType: string;
  decode: (body: Buffer) => number;
  runs: number;
}

function summarize(all: Timing[]): Timing {
  return {
    firstByteMs: median(all.map((t) => t.firstByteMs)),
    lastByteMs: median(all.map((t) => t.lastByteMs)),
    decodeMs: median(all.map((t) => t.decodeMs)),
    totalMs: median(all.map((t) => t.totalMs)),
    serverCpuMs: median(all.map((t) => t.serverCpuMs)),
    bytes: all[0]!.bytes,
    count: all[0]!.count,
  };
}

/**
 * Interleaved: one warm-up each (JIT, connection), then round after round of one request per
 * variant, so a burst of load from elsewhere on the machine hits every variant alike.
 */
async function measureInterleaved(variants: Variant[], expected: number): Promise<Timing[]> {
  for (const v of variants) await fetchOnce(v.url, v.serverPid, v.contentType, v.decode);
  const all: Timing[][] = variants.map(() => []);
  const rounds = Math.max(...variants.map((v) => v.runs));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[i]!;
      if (r >= v.runs) continue;
      const t = await fetchOnce(v.url, v.serverPid, v.contentType, v.decode);
      if (t.count !== expected) throw new Error(`expected ${expected} records, got ${t.count}`);
      all[i]!.push(t);
    }
  }
  return all.map(summarize);
}

const droverDecode = (contentType: string) => (body: Buffer) =>
  (decodeMessage<{ actualLrpGroups?: unknown[] }>(RESPONSE_TYPE, body, contentType).actualLrpGroups ?? []).length;
const plainJsonDecode = (body: Buffer) => (JSON.parse(body.toString('utf8')) as { actual_lrp_groups: unknown[] }).actual_lrp_groups.length;
const plainProtobufDecode = (body: Buffer) =>
  (bbsProtoRoot().lookupType(RESPONSE_TYPE).decode(body) as unknown as { actualLrpGroups: unknown[] }).actualLrpGroups.length;

export interface ListResult {
  store: string;
  records: number;
  info: { seedMs: number; storeMs: number; jsonEncodeMs: number; protoEncodeMs: number; bytes: { json: number; proto: number }; convergePassMs: number };
  /** generic decoders: JSON.parse, protobufjs decode */
  json: Timing;
  proto: Timing;
  /** Drover's codec decode (3 runs) */
  jsonCodec: Timing;
  protoCodec: Timing;
  peer: Timing;
  /** 1-minute load average at the end of the run */
  loadAvg: number;
}

async function runOne(kind: 'sqlite' | 'postgres', lrps: number, instances: number, runs: number): Promise<ListResult> {
  const dir = tempDir('list');
  const schema = `drover_bench_${randomTag(6)}`;
  const store = kind === 'sqlite' ? `sqlite:${join(dir, 'drover.db')}` : `${PG_BASE}?schema=${schema}`;
  const expected = lrps * instances;
  let drover: ChildServer | undefined;
  let bare: ChildServer | undefined;
  try {
    console.log(`[${kind}] seeding ${expected} actual LRPs (${lrps} x ${instances}) through the store...`);
    drover = await startChildServer(SELF, ['--serve-drover', store, dir, String(lrps), String(instances)], 600_000);
    const info = JSON.parse(drover.info) as ListResult['info'];
    console.log(`[${kind}] seeded in ${ms(info.seedMs)}`);

    // The peer serves exactly the bytes Drover sends for the JSON list; both stay up while
    // the requests alternate between them.
    const bodyFile = join(dir, 'list.json');
    writeFileSync(bodyFile, await post(drover.url + LIST_PATH, JSON_CONTENT_TYPE, Buffer.from('{}')));
    bare = await startChildServer(SELF, ['--serve-bare', bodyFile]);
    const [peer, json, proto, jsonCodec, protoCodec] = await measureInterleaved(
      [
        { url: bare.url, serverPid: bare.child.pid!, contentType: JSON_CONTENT_TYPE, decode: plainJsonDecode, runs },
        { url: drover.url, serverPid: drover.child.pid!, contentType: JSON_CONTENT_TYPE, decode: plainJsonDecode, runs },
        { url: drover.url, serverPid: drover.child.pid!, contentType: PROTOBUF_CONTENT_TYPE, decode: plainProtobufDecode, runs },
        { url: drover.url, serverPid: drover.child.pid!, contentType: JSON_CONTENT_TYPE, decode: droverDecode(JSON_CONTENT_TYPE), runs: Math.min(runs, 3) },
        { url: drover.url, serverPid: drover.child.pid!, contentType: PROTOBUF_CONTENT_TYPE, decode: droverDecode(PROTOBUF_CONTENT_TYPE), runs: Math.min(runs, 3) },
      ],
      expected,
    );
    return { store: kind, records: expected, info, json: json!, proto: proto!, jsonCodec: jsonCodec!, protoCodec: protoCodec!, peer: peer!, loadAvg: loadavg()[0]! };
  } finally {
    await drover?.stop();
    await bare?.stop();
    removeDir(dir);
    if (kind === 'postgres') await dropSchema(schema);
  }
}

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_BASE });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

function report(r: ListResult): void {
  header(`BBS list: ${r.records} ActualLRPs, ${r.store} store (medians; load average ${r.loadAvg.toFixed(1)} on ${cpus().length} cores)`);
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  const line = (name: string, t: Timing, peer: Timing) =>
    console.log(
      `${name.padEnd(40)} decoded ${ms(t.totalMs).padStart(9)} (${ratio(t.totalMs, peer.totalMs)})  last byte ${ms(t.lastByteMs).padStart(9)} (${ratio(t.lastByteMs, peer.lastByteMs)})` +
        `  first byte ${ms(t.firstByteMs).padStart(8)}  decode ${ms(t.decodeMs).padStart(8)}  ${mb(t.bytes).padStart(8)}  server CPU ${ms(t.serverCpuMs).padStart(8)}`,
    );
  console.log('request -> decoded body (x peer), request -> last byte (x peer), request -> first byte, decode alone, body size, server CPU for the request');
  line('peer: bare Fastify, same JSON bytes', r.peer, r.peer);
  line('Drover JSON (JSON.parse)', r.json, r.peer);
  line('Drover protobuf (protobufjs decode)', r.proto, r.peer);
  line('Drover JSON (Drover codec; 3 runs)', r.jsonCodec, r.peer);
  line('Drover protobuf (Drover codec; 3 runs)', r.protoCodec, r.peer);
  const i = r.info;
  console.log(
    `server side, in-process CPU time: store read (all pages) ${ms(i.storeMs)}, JSON encode ${ms(i.jsonEncodeMs)}, protobuf encode ${ms(i.protoEncodeMs)}; one convergence pass over the same state ${ms(i.convergePassMs)}`,
  );
  // The target is judged on the server's latency (request -> last byte); decoding is the client's.
  const verdict = (v: number) => `${v <= 1000 ? 'met' : 'NOT met'} (${ms(v)})`;
  console.log(`target <= 1 s, request -> last byte: JSON ${verdict(r.json.lastByteMs)}, protobuf ${verdict(r.proto.lastByteMs)}; peer ${ms(r.peer.lastByteMs)}`);
  console.log(`request -> decoded by a generic decoder: JSON ${verdict(r.json.totalMs)}, protobuf ${verdict(r.proto.totalMs)}; peer ${ms(r.peer.totalMs)}`);
}

export async function main(): Promise<ListResult[]> {
  const which = arg('store', 'both');
  const lrps = Number(arg('lrps', '1000'));
  const instances = Number(arg('instances', '100'));
  const runs = Number(arg('runs', '5'));
  const results: ListResult[] = [];
  for (const kind of ['sqlite', 'postgres'] as const) {
    if (which !== 'both' && which !== kind) continue;
    const r = await runOne(kind, lrps, instances, runs);
    report(r);
    results.push(r);
  }
  keepAlive.destroy();
  return results;
}

const mode = process.argv[2];
if (mode === '--serve-drover') {
  await serveDrover(process.argv[3]!, process.argv[4]!, Number(process.argv[5]), Number(process.argv[6]));
} else if (mode === '--serve-bare') {
  await serveBare(process.argv[3]!);
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
