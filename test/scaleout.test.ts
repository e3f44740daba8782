// Scale-out: several control-plane replicas on one PostgreSQL schema, leader election with a
// fencing epoch, remote cell agents failing over between replicas.
//
// The store-level tests use two store handles on one schema (two "replicas" in one process).
// The process-level tests start 3 `drover serve` replicas and 2 `drover agent` cells as child
// processes; instances are counted as OS processes by a marker in their environment (see
// test/agent.test.ts), and every instance is `exec sleep`, one process each.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import { DroverError } from '../src/model/errors.js';
import { validateDesiredLrp } from '../src/model/validate.js';
import { EventBus, type CoreContext } from '../src/core/context.js';
import { applyPlan } from '../src/core/convergence.js';
import { LeaderElection } from '../src/converge/leader.js';
import { dropSchema, killProcessGroups, lrpInput, PG_URL, processesMarked, tempDir, uniqueSchema, waitFor } from './helpers.js';
import { droverCli as cli, killCli, liveClis, type DroverCli as Cli } from './drover-cli.js';
import { expect, instancesOf, killProcessesOf, MSERVICES, serviceZip } from './era-fixtures.js';

const RUN = randomBytes(4).toString('hex');
const MARK_VAR = 'DROVER_SCALEOUT_TEST';
const silent = pino({ level: 'silent' });

const dirs: string[] = [];
const schemas: string[] = [];
function dir(): string {
  const d = tempDir('drover-scaleout-');
  dirs.push(d);
  return d;
}
function schema(): string {
  const s = uniqueSchema();
  schemas.push(s);
  return s;
}

// ------------------------------------------------------------------------------ processes

interface Proc {
  pid: number;
  pgid: number;
  mark: string;
}


/** Live (non-zombie) processes whose marker starts with `prefix`. */
function scan(prefix: string): Proc[] {
  return processesMarked(MARK_VAR, prefix).map(({ pid, pgid, env }) => ({ pid, pgid, mark: env.get(MARK_VAR) ?? '' }));
}

/** Instance processes per marker. */
function countByMark(prefix: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of scan(prefix)) counts.set(p.mark, (counts.get(p.mark) ?? 0) + 1);
  return counts;
}

function killMarked(prefix: string): void {
  killProcessGroups(scan(prefix));
}
interface Replica {
  id: string;
  cli: Cli;
  url: string;
}

async function replica(store: string, id: string, dataDir: string): Promise<Replica> {
  const c = cli(id, ['serve', '--store', store, '--data-dir', dataDir, '--http', '127.0.0.1:0', '--no-agent', '--mqtt', 'none', '--replica-id', id, '--log-level', 'info']);
  // generous: on a loaded 2-core machine a replica's start-up alone has taken over 15 s
  const m = await c.line(/"url":"(http:\/\/127\.0\.0\.1:\d+)".*drover is serving|drover is serving.*"url":"(http:\/\/127\.0\.0\.1:\d+)"/, 45_000);
  return { id, cli: c, url: (m[1] ?? m[2])! };
}

async function agent(urls: string[], cellId: string, dataDir: string): Promise<Cli> {
  const c = cli(cellId, ['agent', '--api', urls.join(','), '--cell-id', cellId, '--data-dir', dataDir, '--ttl-ms', '2000', '--log-level', 'info']);
  await c.line(/cell agent started/, 45_000);
  return c;
}

// ------------------------------------------------------------------------------ HTTP

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Status {
  replicaId: string;
  leading: boolean;
  epoch: number;
  myEpoch: number;
  leader?: string;
  cells: { cellId: string }[];
}

async function status(url: string, timeoutMs = 1000): Promise<Status> {
  const res = await fetch(new URL('/status', url), { signal: AbortSignal.timeout(timeoutMs) });
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

/** The replicas that answer /status and say they lead. */
async function leaders(replicas: Replica[]): Promise<{ r: Replica; s: Status }[]> {
  const all = await Promise.all(replicas.map(async (r) => ({ r, s: await status(r.url).catch(() => undefined) })));
  return all.filter((x): x is { r: Replica; s: Status } => !!x.s?.leading);
}

/** Waits until exactly one of `replicas` says it leads (leadership may move under heavy load). */
async function oneLeader(replicas: Replica[], what = 'one leader', timeoutMs = 8000): Promise<{ r: Replica; s: Status }> {
  const [l] = await waitFor(async () => {
    const l = await leaders(replicas);
    return l.length === 1 ? l : undefined;
  }, what, timeoutMs, 50);
  return l!;
}

async function bbs(url: string, path: string, body: object, timeoutMs = 3000): Promise<Json> {
  const res = await fetch(new URL(path, url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
  const json = (await res.json()) as Json;
  if (json.error) throw Object.assign(new Error(`${path}: ${json.error.type}: ${json.error.message}`), { bbsType: json.error.type as string });
  if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
  return json;
}

function lrp(guid: string, mark: string, instances: number): object {
  return {
    process_guid: guid,
    domain: 'scaleout',
    instances,
    env: [{ name: MARK_VAR, value: mark }],
    action: { run: { path: '/bin/sh', args: ['-c', 'exec sleep 1000', mark] } },
  };
}

/**
 * Desires through a random live replica; on a network failure, through another one. Accepted
 * when a replica answered without error, or said `exists` (an earlier try did commit).
 */
async function desire(replicas: () => Replica[], body: object): Promise<boolean> {
  for (let attempt = 0; attempt < 6; attempt++) {
    const live = replicas();
    const r = live[Math.floor(Math.random() * live.length)]!;
    try {
      // generous: under heavy load a desire has taken over 3 s (see docs/benchmarks.md)
      await bbs(r.url, '/v1/desired_lrp/desire', { desired_lrp: body }, 10_000);
      return true;
    } catch (e) {
      const type = (e as { bbsType?: string }).bbsType;
      if (type === 'ResourceExists' || /exists/i.test((e as Error).message)) return true;
      if (type) throw e;
      await sleep(100);
    }
  }
  return false;
}

async function actualsByGuid(url: string): Promise<Map<string, Json[]>> {
  const res = await bbs(url, '/v1/actual_lrp_groups/list', {});
  const out = new Map<string, Json[]>();
  for (const g of (res.actual_lrp_groups ?? []) as Json[]) {
    const a = g.instance ?? g.evacuating;
    if (!a) continue;
    const list = out.get(a.process_guid) ?? [];
    list.push(a);
    out.set(a.process_guid, list);
  }
  return out;
}

/** Every desired LRP has exactly its count of RUNNING instances and of OS processes. */
async function convergedExactly(url: string, want: Map<string, number>, prefix: string): Promise<true | undefined> {
  const procs = countByMark(prefix);
  const actuals = await actualsByGuid(url);
  for (const [guid, n] of want) {
    if ((procs.get(`${prefix}${guid}`) ?? 0) !== n) return undefined;
    const list = actuals.get(guid) ?? [];
    if (list.length !== n || list.some((a) => a.state !== 'RUNNING')) return undefined;
  }
  return true;
}

// ------------------------------------------------------------------------------ active-passive

const activePassive = new Set<string>();

/** An Era mservice in mode active-passive (placement strategy `leader`): its id. */
async function activePassiveService(url: string, name: string): Promise<string> {
  const m = await expect(url, 201, 'POST', MSERVICES, { name, cmdline: './bin/run.sh', cmdparam: name, opts: { mode: 'active-passive' } });
  activePassive.add(m.id);
  await expect(url, 200, 'POST', `${MSERVICES}/${m.id}/attachment`, serviceZip());
  return m.id;
}

/** How many instances of `guid` a replica lists as RUNNING (undefined: it did not answer). */
async function runningOn(url: string, guid: string): Promise<number | undefined> {
  try {
    const res = await bbs(url, '/v1/actual_lrps/list', { process_guid: guid }, 1000);
    return ((res.actual_lrps ?? []) as Json[]).filter((a) => a.state === 'RUNNING').length;
  } catch {
    return undefined;
  }
}

/** Runs `probe` every `everyMs` until stop() (which waits for the probe under way). */
function sampleEvery(everyMs: number, probe: () => void | Promise<void>): { stop(): Promise<void> } {
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      await probe();
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      sampling = false;
      await loop;
    },
  };
}

/** Exactly one RUNNING instance as `url` lists it, and one process group. */
async function runsOnce(url: string, guid: string): Promise<true | undefined> {
  return (await runningOn(url, guid)) === 1 && instancesOf(guid).length === 1 ? true : undefined;
}

after(async () => {
  await Promise.all([...liveClis].map((c) => killCli(c)));
  await killProcessesOf(activePassive).catch(() => undefined);
  killMarked(`so-${RUN}`);
  await waitFor(() => (scan(`so-${RUN}`).length === 0 ? true : undefined), 'no instance processes left', 5000).catch(() => undefined);
  for (const s of schemas) await dropSchema(s).catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------ the store

describe('leader lease and fencing in the store', () => {
  it('takes over an expired lease at a new epoch, and refuses the stale leader’s writes', async () => {
    const s = schema();
    const spec = `${PG_URL}?schema=${s}`;
    const d = dir();
    const a = await openStore(spec, d);
    const b = await openStore(spec, d);
    try {
      const name = 'convergence';
      const la = await a.acquireLease(name, 'A', 400);
      assert.equal(la?.epoch, 1);
      assert.equal(la?.holder, 'A');
      assert.equal(await b.acquireLease(name, 'B', 400), undefined, 'B cannot take a live lease');
      assert.equal((await a.acquireLease(name, 'A', 400))?.epoch, 1, 'a renewal keeps the epoch');
      await sleep(500);
      const lb = await b.acquireLease(name, 'B', 10_000);
      assert.equal(lb?.epoch, 2, 'the takeover increments the epoch');
      assert.equal(await a.acquireLease(name, 'A', 400), undefined, 'A cannot renew what B took');
      assert.deepEqual({ ...(await a.readLease(name)), now: 0 }, { ...lb!, now: 0 });

      // A's stale write: refused, and nothing of it is stored
      const fenceA = { name, holder: 'A', epoch: 1 };
      const fenceB = { name, holder: 'B', epoch: 2 };
      let ran = false;
      await assert.rejects(
        a.transaction(async (tx) => {
          ran = true;
          await tx.appendEvents([{ type: 'actual_lrp_created', payload: { stale: true }, at: Date.now() }]);
        }, { fence: fenceA }),
        (e) => e instanceof DroverError && e.kind === 'conflict',
      );
      assert.equal(ran, false);
      assert.equal(await a.lastEventId(), 0);

      // ... the same through the convergence applier, with each handle as a replica's store
      const ctx = (store: Store): CoreContext => ({ store, bus: new EventBus(), log: silent, now: Date.now });
      const create = [{ kind: 'create' as const, processGuid: 'p1', domain: 'd', index: 0 }];
      // a create re-reads its desired LRP, so there is one (stored unfenced, as no leader's write)
      const p1 = validateDesiredLrp(lrpInput('p1', 'd', 1));
      await b.transaction((tx) => tx.insertDesiredLrp(p1));
      await assert.rejects(applyPlan(ctx(a), create, new Map(), fenceA), (e) => e instanceof DroverError && e.kind === 'conflict');
      assert.equal((await b.listActualLrps()).length, 0, 'the deposed leader created nothing');
      // a fence naming the right holder but an old epoch is refused as well
      await assert.rejects(applyPlan(ctx(b), create, new Map(), { ...fenceB, epoch: 1 }), (e) => e instanceof DroverError && e.kind === 'conflict');
      const applied = await applyPlan(ctx(b), create, new Map(), fenceB);
      assert.equal(applied.skipped, 0);
      assert.equal((await a.listActualLrps()).length, 1, 'the leader’s write is stored');

      // an expired lease fences its own holder out too, until it is taken again (new epoch)
      await b.releaseLease(name, 'B');
      await assert.rejects(b.transaction(async () => undefined, { fence: fenceB }), (e) => e instanceof DroverError && e.kind === 'conflict');
      assert.equal((await b.acquireLease(name, 'B', 1000))?.epoch, 3);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('elects one leader among replicas, and a successor when it stops', async () => {
    const s = schema();
    const spec = `${PG_URL}?schema=${s}`;
    const d = dir();
    const stores = [await openStore(spec, d), await openStore(spec, d)];
    const elections = stores.map((st, i) => new LeaderElection(st, { holder: `r${i}`, leaseMs: 600, renewMs: 200 }, silent));
    try {
      await Promise.all(elections.map((e) => e.start()));
      const first = await waitFor(() => {
        const leading = elections.filter((e) => e.isLeader());
        return leading.length === 1 ? leading[0] : undefined;
      }, 'one leader');
      const other = elections.find((e) => e !== first)!;
      assert.equal(other.isLeader(), false);
      const epoch = first.epoch;
      await first.stop();
      const t0 = Date.now();
      await waitFor(() => (other.isLeader() ? true : undefined), 'the successor', 3000, 20);
      assert.ok(Date.now() - t0 < 1000, 'a released lease is taken at the next try');
      assert.equal(other.epoch, epoch + 1);
    } finally {
      for (const e of elections) await e.stop();
      for (const st of stores) await st.close();
    }
  });

  it('on SQLite the single process always leads, at epoch 1', async () => {
    const d = dir();
    const store = await openStore(`sqlite:${d}/drover.db`, d);
    try {
      const e = new LeaderElection(store, { holder: 'solo', leaseMs: 3000, renewMs: 1000 }, silent);
      await e.start();
      assert.equal(e.isLeader(), true);
      assert.equal(e.epoch, 1);
      assert.equal(e.fence(), undefined);
      await e.stop();
    } finally {
      await store.close();
    }
  });
});

// ------------------------------------------------------------------------------ processes

describe('3 replicas on PostgreSQL with 2 remote agents', () => {
  const s = schema();
  const store = `${PG_URL}?schema=${s}`;
  const prefix = `so-${RUN}-`;
  const want = new Map<string, number>();
  let replicas: Replica[] = [];
  const agents: Cli[] = [];
  const alive = () => replicas.filter((r) => r.cli.child.exitCode === null && r.cli.child.signalCode === null);
  /** `drover status --api <every replica>` with `args`: its output (it must exit 0). */
  const droverStatus = async (args: string[]): Promise<string> => {
    const c = cli('status', ['status', '--api', replicas.map((r) => r.url).join(','), ...args]);
    await c.exited;
    assert.equal(c.child.exitCode, 0, c.output.join('\n'));
    return c.output.join('\n');
  };

  it('starts: exactly one leader, every replica reports it and the live cells', async () => {
    // the first replica migrates the schema; the others then start together
    replicas.push(await replica(store, 'r1', dir()));
    replicas.push(...(await Promise.all([replica(store, 'r2', dir()), replica(store, 'r3', dir())])));
    for (const cellId of ['cell-a', 'cell-b']) agents.push(await agent(replicas.map((r) => r.url), `${cellId}-${RUN}`, dir()));
    const statuses = await waitFor(async () => {
      const all = await Promise.all(replicas.map((r) => status(r.url)));
      const ok = all.filter((x) => x.leading).length === 1 && all.every((x) => x.cells.length === 2 && x.leader && x.epoch >= 1);
      return ok ? all : undefined;
    }, 'one leader and 2 live cells on every replica');
    const leader = statuses.find((x) => x.leading)!;
    for (const x of statuses) {
      assert.equal(x.leader, leader.replicaId);
      assert.equal(x.epoch, leader.epoch);
    }
    assert.deepEqual(statuses.map((x) => x.replicaId), ['r1', 'r2', 'r3']);
    // `drover status` over the three says the same, as JSON and as a table
    await waitFor(async () => {
      const cliStatuses = JSON.parse(await droverStatus(['--json'])) as Status[];
      const leading = cliStatuses.filter((x) => x.leading);
      assert.equal(leading.length, 1);
      assert.deepEqual(
        cliStatuses.map((x) => [x.replicaId, x.epoch, x.leader, x.cells.map((c) => c.cellId).sort()]),
        ['r1', 'r2', 'r3'].map((id) => [id, leading[0]!.epoch, leading[0]!.replicaId, [`cell-a-${RUN}`, `cell-b-${RUN}`]]),
      );
      const rows = (await droverStatus([])).split('\n').filter((l) => l.includes('http://'));
      assert.equal(rows.length, 3);
      assert.equal(rows.filter((l) => /\byes\b/.test(l)).length, 1, `one replica leads:\n${rows.join('\n')}`);
      return true;
    }, '`drover status` to show one leader and both cells on every replica', 15_000, 200);

    // events: a subscriber on one replica sees a change committed through another, and one
    // resuming elsewhere from its last event id sees it again
    const guid = `sse-${RUN}`;
    const abort = new AbortController();
    const res = await fetch(new URL('/v1/events?format=json', replicas[2]!.url), { signal: abort.signal });
    const reader = res.body!.getReader();
    await desire(() => [replicas[0]!], lrp(guid, `${prefix}${guid}`, 0));
    want.set(guid, 0);
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes(guid) && Date.now() < deadline) {
      const { value, done } = await Promise.race([reader.read(), sleep(5000).then(() => ({ value: undefined, done: true }))]);
      if (done) break;
      text += Buffer.from(value!).toString('utf8');
    }
    abort.abort();
    assert.ok(text.includes(guid), `replica r3's event stream shows the desire made on r1:\n${text}`);
    const id = Number(/id: (\d+)\nevent: [^\n]*\ndata: [^\n]*desired_lrp_created[^\n]*/.exec(text)?.[1] ?? text.match(/id: (\d+)/)?.[1]);
    assert.ok(id > 0);
    const again = await fetch(new URL(`/v1/events?format=json&last_event_id=${id - 1}`, replicas[1]!.url), { signal: AbortSignal.timeout(1500) })
      .then(async (r) => {
        let t = '';
        const rd = r.body!.getReader();
        try {
          while (!t.includes(guid)) t += Buffer.from((await rd.read()).value!).toString('utf8');
        } catch {
          // timed out
        }
        return t;
      })
      .catch(() => '');
    assert.ok(again.includes(`id: ${id}`) && again.includes(guid), `r2 resumes at id ${id}:\n${again}`);
  });

  it('kill -9 of the leader under a stream of desires: a new leader within 5 s, nothing lost, no duplicates, never two active-passive instances', async (t) => {
    const { r: old, s: oldStatus } = await oneLeader(replicas);
    // an active-passive service, created and watched through a replica that survives
    const witness = replicas.find((r) => r !== old)!;
    const single = await activePassiveService(witness.url, `single-${RUN}`);
    await waitFor(() => runsOnce(witness.url, single), 'the active-passive service running once', 20_000, 50);
    // sample all along, until the end of the test (also when it fails):
    // - the instance processes: never more than desired for any LRP, never two process
    //   groups of the active-passive service (every 100 ms: a /proc scan costs CPU)
    // - the active-passive service through the witness's HTTP API: never two RUNNING
    //   instances (every 20 ms)
    const over: string[] = [];
    const twice: string[] = [];
    let singleSamples = 0;
    const t0 = Date.now();
    const samplers = [
      sampleEvery(100, () => {
        for (const [mark, n] of countByMark(prefix)) {
          const guid = mark.slice(prefix.length);
          const desired = want.get(guid);
          if (desired !== undefined && n > desired) over.push(`${guid}: ${n} processes > ${desired}`);
        }
        const groups = instancesOf(single).length;
        if (groups > 1) twice.push(`${Date.now() - t0} ms: ${groups} process groups`);
      }),
      sampleEvery(20, async () => {
        const running = await runningOn(witness.url, single);
        if (running !== undefined) singleSamples++;
        if ((running ?? 0) > 1) twice.push(`${Date.now() - t0} ms: ${running} RUNNING`);
      }),
    ];
    const stopSampling = () => Promise.all(samplers.map((x) => x.stop()));
    try {
      // a steady, bounded stream: 30 desires, one every 150 ms, to random live replicas
      let killedAt = 0;
      let newLeaderMs = -1;
      const failover = (async () => {
        await sleep(1500);
        killedAt = Date.now();
        await killCli(old.cli, 'SIGKILL');
        const survivors = alive();
        const { r } = await oneLeader(survivors, 'a new leader');
        newLeaderMs = Date.now() - killedAt;
        const s2 = await status(r.url);
        assert.ok(s2.epoch > oldStatus.epoch, `a new epoch (${s2.epoch} > ${oldStatus.epoch})`);
        assert.notEqual(r.id, old.id);
      })();
      const refused: string[] = [];
      for (let i = 0; i < 30; i++) {
        const guid = `g${i}-${RUN}`;
        const n = 1 + (i % 3);
        if (await desire(alive, lrp(guid, `${prefix}${guid}`, n))) want.set(guid, n);
        else refused.push(guid);
        await sleep(150);
      }
      await failover;
      t.diagnostic(`new leader ${newLeaderMs} ms after kill -9; ${want.size} desires accepted`);
      await waitFor(async () => {
        const rows = (await droverStatus([])).split('\n').filter((l) => l.includes('http://'));
        assert.match(rows.find((l) => l.includes(old.url)) ?? '', /cannot reach/, `the killed replica is unreachable:\n${rows.join('\n')}`);
        assert.equal(rows.filter((l) => /\byes\b/.test(l)).length, 1, `one survivor leads:\n${rows.join('\n')}`);
        return true;
      }, '`drover status` to show the killed replica unreachable and one survivor leading', 15_000, 200);
      assert.ok(newLeaderMs >= 0 && newLeaderMs < 5000, `new leader after ${newLeaderMs} ms`);
      assert.deepEqual(refused, [], 'every desire was accepted by some replica');

      // every accepted desire is stored, as seen from each survivor
      for (const r of alive()) {
        const res = await bbs(r.url, '/v1/desired_lrps/list', { domain: 'scaleout' });
        const stored = new Map<string, number>(((res.desired_lrps ?? []) as Json[]).map((d) => [d.process_guid, d.instances ?? 0]));
        for (const [guid, n] of want) assert.equal(stored.get(guid), n, `${guid} stored on ${r.id}`);
      }
      // instances converge to exactly the desired counts, and stay there
      const url = alive()[0]!.url;
      await waitFor(() => convergedExactly(url, want, prefix), 'exact convergence', 60_000, 250);
      await sleep(2000);
      assert.equal(await convergedExactly(url, want, prefix), true, 'still exact 2 s later');
      // the active-passive service: one RUNNING again after the failover
      await waitFor(() => runsOnce(witness.url, single), 'the active-passive service running once after the failover', 20_000, 50);
    } finally {
      await stopSampling();
    }
    t.diagnostic(`active-passive service sampled ${singleSamples} times through ${witness.id}`);
    assert.deepEqual(over, [], 'never more processes than desired');
    assert.deepEqual(twice, [], 'never two RUNNING instances (or processes) of the active-passive service');
    assert.ok(singleSamples > 50, `sampled all along (${singleSamples} samples)`);
  });

  it('a paused old leader (SIGSTOP past its lease, then SIGCONT) stops leading and cannot write', async (t) => {
    const { r: paused, s: before } = await oneLeader(alive());
    const others = alive().filter((r) => r !== paused);
    const pausedAt = Date.now();
    paused.cli.child.kill('SIGSTOP');
    try {
      const { r: next, s: nextStatus } = await oneLeader(others, 'a leader among the others');
      t.diagnostic(`new leader ${Date.now() - pausedAt} ms after SIGSTOP`);
      assert.ok(Date.now() - pausedAt < 5000, 'within 5 s of the pause');
      assert.ok(nextStatus.epoch > before.epoch);
      // work for the new leader while the old one sleeps
      const guid = `after-pause-${RUN}`;
      assert.ok(await desire(() => [next], lrp(guid, `${prefix}${guid}`, 2)));
      want.set(guid, 2);
      await sleep(1000);
    } finally {
      paused.cli.child.kill('SIGCONT');
    }
    // the first answer after waking already says: not leading, and the lease moved on
    const woke = await waitFor(() => status(paused.url, 2000), 'the woken replica to answer', 5000);
    assert.equal(woke.leading, false);
    assert.ok(woke.epoch > woke.myEpoch, `the lease's epoch ${woke.epoch} is past the one it led at (${woke.myEpoch})`);
    assert.notEqual(woke.leader, paused.id);
    // and it stays a follower; the single leader is elsewhere
    await sleep(1500);
    const l = await oneLeader(alive());
    assert.notEqual(l.r.id, paused.id);
    // nothing it did after waking disturbed the counts
    await waitFor(() => convergedExactly(l.r.url, want, prefix), 'exact convergence after the pause', 60_000, 250);
    // a stale write it attempted, if any, was refused (not an error)
    const refusedLines = paused.cli.output.filter((x) => x.includes('convergence pass refused'));
    const failedLines = paused.cli.output.filter((x) => x.includes('convergence pass failed'));
    t.diagnostic(`${refusedLines.length} stale convergence passes refused after SIGCONT`);
    assert.deepEqual(failedLines, [], `no convergence failures other than refusals (${refusedLines.length} refused)`);
  });

  it('shuts down cleanly and leaves no processes', async () => {
    for (const a of agents) await killCli(a, 'SIGKILL');
    for (const r of replicas) await killCli(r.cli, 'SIGTERM');
    killMarked(`so-${RUN}`);
    await waitFor(() => (scan(`so-${RUN}`).length === 0 ? true : undefined), 'no instance processes left', 5000);
    // the active-passive instance is fenced to its agent: it died with it
    await waitFor(() => ([...activePassive].every((g) => instancesOf(g).length === 0) ? true : undefined), 'no active-passive process left', 5000);
    await dropSchema(s);
    schemas.splice(schemas.indexOf(s), 1);
    replicas = [];
  });
});
