// One convergence pass (`convergeOnce`: snapshot, plan, apply) over 10k and 100k ActualLRPs,
// on SQLite and on PostgreSQL, in this process. The state is steady (every instance RUNNING on
// a live cell, as many as desired), so the pass finds nothing to do: this is the cost every
// leader pays on every interval and after every burst of commits. Peer, same run: a plain
// SELECT of the same rows (actual_lrps, desired_lrps, cells, in the store's order) through the
// driver itself (better-sqlite3 / pg), with no mapping to the model. Passes and peer queries
// alternate; each figure is the median of --runs.
//
//   node dist/bench/convergence-pass.js [--store sqlite|postgres|both] [--sizes 10000,100000]
//                                       [--instances 100] [--cells 20] [--runs 5]
//
// The seed goes through the store's public transaction API in transactions of 10,000 rows;
// a larger size adds to the smaller one's rows. PostgreSQL uses a fresh schema of
// DROVER_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test), dropped at the end.

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import Database from 'better-sqlite3';
import pg from 'pg';
import pino from 'pino';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { convergeOnce, type PassReport } from '../src/converge/loop.js';
import { validateDesiredLrp } from '../src/model/validate.js';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import { header, median, ms, randomTag, ratio, removeDir, roomyLiveCell, runningActualLrp, tempDir } from './common.js';

const PG_BASE = process.env.DROVER_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const TARGET_MS = 2000;
const SEED_BATCH = 10_000;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/** The peer: the rows a snapshot reads, as the driver returns them. */
const PEER_QUERIES = ['SELECT * FROM actual_lrps ORDER BY process_guid, idx', 'SELECT data FROM desired_lrps ORDER BY process_guid', 'SELECT data FROM cells ORDER BY cell_id'];

interface Target {
  kind: 'sqlite' | 'postgres';
  store: Store;
  /** runs PEER_QUERIES: the actual_lrps rows read, and each query's time */
  peerSelect(): Promise<{ actualRows: number; ms: number[] }>;
  close(): Promise<void>;
}

/** Runs each peer query in turn through `run` (which returns its row count), timing each. */
async function timed(run: (q: number) => Promise<number>): Promise<{ actualRows: number; ms: number[] }> {
  const ms: number[] = [];
  let actualRows = 0;
  for (let q = 0; q < PEER_QUERIES.length; q++) {
    const t = performance.now();
    const rows = await run(q);
    ms.push(performance.now() - t);
    if (q === 0) actualRows = rows;
  }
  return { actualRows, ms };
}

async function sqliteTarget(): Promise<Target> {
  const dir = tempDir('convergence');
  const file = join(dir, 'drover.db');
  const store = await openStore(`sqlite:${file}`, dir);
  const db = new Database(file, { readonly: true });
  const statements = PEER_QUERIES.map((q) => db.prepare(q));
  return {
    kind: 'sqlite',
    store,
    peerSelect: () => timed(async (q) => statements[q]!.all().length),
    async close() {
      db.close();
      await store.close();
      removeDir(dir);
    },
  };
}

async function postgresTarget(): Promise<Target> {
  const dir = tempDir('convergence');
  const schema = `drover_bench_cp_${randomTag()}`;
  const store = await openStore(`${PG_BASE}?schema=${schema}`, dir);
  const client = new pg.Client({ connectionString: PG_BASE, options: `-c search_path=${schema}` });
  await client.connect();
  return {
    kind: 'postgres',
    store,
    peerSelect: () => timed(async (q) => (await client.query(PEER_QUERIES[q]!)).rowCount ?? 0),
    async close() {
      await store.close();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
      removeDir(dir);
    },
  };
}

const guid = (l: number) => `cp-${String(l).padStart(6, '0')}`;

/** Adds LRPs of `instances` RUNNING instances each (spread over `cells` live cells) until `total` instances exist. */
async function seed(store: Store, from: number, total: number, instances: number, cells: number): Promise<void> {
  const now = Date.now();
  await store.transaction(async (tx) => {
    if (from === 0) for (let c = 0; c < cells; c++) await tx.upsertCell(roomyLiveCell(`cell-${c}`, now));
    for (let l = from / instances; l < total / instances; l++) {
      const d = validateDesiredLrp({ processGuid: guid(l), domain: 'bench', instances, action: { run: { path: '/bin/sleep', args: ['1000'], dir: '', env: [], user: '' } } });
      d.modificationTag = { epoch: randomUUID(), index: 0 };
      await tx.insertDesiredLrp(d);
    }
  });
  for (let start = from; start < total; start += SEED_BATCH) {
    await store.transaction(async (tx) => {
      for (let n = start; n < Math.min(total, start + SEED_BATCH); n++) {
        await tx.insertActualLrp(runningActualLrp(guid(Math.floor(n / instances)), n % instances, `cell-${n % cells}`, n, now));
      }
    });
  }
}

interface Figures {
  kind: string;
  size: number;
  pass: number;
  snapshot: number;
  plan: number;
  apply: number;
  actions: number;
  /** the store's listActualLrps alone (query + mapping to the model) */
  listActual: number;
  peer: number;
  /** the peer's SELECT of actual_lrps alone */
  peerActual: number;
}

async function measure(target: Target, size: number, runs: number): Promise<Figures> {
  const ctx: CoreContext = { store: target.store, bus: new EventBus(), log: pino({ level: 'silent' }), now: Date.now };
  const passes: PassReport[] = [];
  const peer: number[][] = [];
  const listActual: number[] = [];
  for (let r = 0; r < runs; r++) {
    passes.push(await convergeOnce(ctx));
    const { actualRows, ms: queryMs } = await target.peerSelect();
    peer.push(queryMs);
    if (actualRows !== size) throw new Error(`peer read ${actualRows} rows, expected ${size}`);
    const t = performance.now();
    await target.store.listActualLrps();
    listActual.push(performance.now() - t);
  }
  const m = (f: (p: PassReport) => number) => median(passes.map(f));
  return {
    kind: target.kind,
    size,
    pass: m((p) => p.snapshotMs + p.planMs + p.applyMs),
    snapshot: m((p) => p.snapshotMs),
    plan: m((p) => p.planMs),
    apply: m((p) => p.applyMs),
    actions: Math.max(...passes.map((p) => p.actions)),
    listActual: median(listActual),
    peer: median(peer.map((q) => q.reduce((a, b) => a + b, 0))),
    peerActual: median(peer.map((q) => q[0]!)),
  };
}

const stores = arg('store', 'both');
const sizes = arg('sizes', '10000,100000').split(',').map(Number).sort((a, b) => a - b);
const instances = Number(arg('instances', '100'));
const cells = Number(arg('cells', '20'));
const runs = Number(arg('runs', '5'));
if (sizes.some((s) => !(s > 0) || s % instances !== 0)) throw new Error(`--sizes must be multiples of --instances (${instances})`);

header(`convergence pass, steady state, ${sizes.join(' / ')} ActualLRPs (${instances} per LRP, ${cells} cells, median of ${runs})`);
console.log(`${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
const results: Figures[] = [];
for (const open of [sqliteTarget, postgresTarget].filter((_, i) => stores === 'both' || stores === ['sqlite', 'postgres'][i])) {
  const target = await open();
  try {
    let seeded = 0;
    for (const size of sizes) {
      const t0 = performance.now();
      await seed(target.store, seeded, size, instances, cells);
      seeded = size;
      console.log(`[${target.kind}] seeded to ${size} ActualLRPs in ${ms(performance.now() - t0)}`);
      const f = await measure(target, size, runs);
      results.push(f);
      console.log(
        `[${target.kind}] ${size}: pass ${ms(f.pass)} (snapshot ${ms(f.snapshot)}, plan ${ms(f.plan)}, apply ${ms(f.apply)}, ${f.actions} actions); ` +
          `store listActualLrps alone ${ms(f.listActual)}; peer plain SELECT ${ms(f.peer)} (actual_lrps ${ms(f.peerActual)}); pass / peer ${ratio(f.pass, f.peer)}`,
      );
    }
  } finally {
    await target.close();
  }
}
console.log(`\nstore     ActualLRPs  pass        snapshot    plan        apply      peer SELECT  ratio   target ${TARGET_MS} ms`);
for (const f of results) {
  console.log(
    `${f.kind.padEnd(9)} ${String(f.size).padEnd(11)} ${ms(f.pass).padEnd(11)} ${ms(f.snapshot).padEnd(11)} ${ms(f.plan).padEnd(11)} ${ms(f.apply).padEnd(10)} ${ms(f.peer).padEnd(12)} ${ratio(f.pass, f.peer).padEnd(7)} ${f.pass <= TARGET_MS ? 'met' : 'missed'}`,
  );
}
console.log(`load average now ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
