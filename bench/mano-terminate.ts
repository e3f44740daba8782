// MANO terminate over RabbitMQ (issue 7): time from publishing a `service.instance.terminate`
// request to its first reply (TERMINATING), versus a raw amqplib echo through the same broker
// and exchange in the same run.
//
// Per round: a fresh Drover (in this process; SQLite in a temp dir, the embedded agent, so
// VNFs are real `sleep 1000` processes) on a unique exchange of the RabbitMQ at
// 127.0.0.1:5672. The client (as the gatekeeper: its own connection, an exclusive queue bound
// to the lifecycle topics, YAML bodies with app_id / correlation_id / reply_to) and the echo
// run in a child process (this file with --peer), as a gatekeeper runs beside Drover, not in
// it; with --client inprocess they share Drover's process and event loop instead. The client
// instantiates
// <warmup> + <services> services of one VNF each, one after the other, waiting for READY.
// Then for each service: one echo round trip and one terminate (order alternating), where the
// terminate is timed publish -> first reply, and then the second reply (READY, every process
// stopped) is awaited before the next. The first <warmup> pairs are not counted.
//
// The echo is a consumer on its own connection and queue, bound on the same exchange to the
// topic `bench.echo.terminate`; it republishes each request's body (same bytes) to the
// request's reply_to topic with the request's correlation_id and its own app_id (the reply
// marker), and acks the request — what Drover does, minus the work.
//
//   node dist/bench/mano-terminate.js [--rounds 3] [--services 30] [--warmup 3] [--client separate|inprocess]
//
// Cleanup: Drover stops its processes and closes; anything left with the run's marker is
// SIGKILLed by pid; Drover's queues and the exchange are deleted; temp dirs removed.

import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { stringify } from 'yaml';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { TOPIC_CREATE, TOPIC_TERMINATE, UNSUPPORTED_TOPICS } from '../src/api/amqp/mano.js';
import { header, killByMarker, median, ms, percentile, randomTag, ratio, removeDir, sleepMarker, tempDir } from './common.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const AMQP_URL = process.env.DROVER_BENCH_AMQP ?? 'amqp://guest:guest@127.0.0.1:5672';
const ROUNDS = Number(arg('rounds', '3'));
const SERVICES = Number(arg('services', '30'));
const WARMUP = Number(arg('warmup', '3'));
const CLIENT_APP_ID = 'tng-gtk-sp';
const ECHO_APP_ID = 'bench-echo';
const ECHO_TOPIC = 'bench.echo.terminate';
const READY_TIMEOUT_MS = 30_000;
const REPLY_TIMEOUT_MS = 15_000;
const CLIENT = arg('client', 'separate');

/** Milliseconds on a clock both processes share (the client's and Drover's timestamps are compared). */
const clock = () => performance.timeOrigin + performance.now();

interface Reply {
  at: number;
  appId?: string;
  body: string;
}

/** The gatekeeper-like client: one exclusive queue for every topic it talks on; waiters by correlation id. */
class Client {
  private readonly replies = new Map<string, Reply[]>();
  private readonly waiters = new Map<string, { n: number; done: (r: Reply[]) => void }>();

  private constructor(
    private readonly conn: ChannelModel,
    private readonly ch: Channel,
    private readonly exchange: string,
  ) {}

  static async open(exchange: string): Promise<Client> {
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    await ch.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
    const { queue } = await ch.assertQueue(`q.bench.client.${randomUUID()}`, { exclusive: true, autoDelete: true });
    for (const topic of [TOPIC_CREATE, TOPIC_TERMINATE, ECHO_TOPIC]) await ch.bindQueue(queue, exchange, topic);
    const client = new Client(conn, ch, exchange);
    await ch.consume(queue, (msg) => msg && client.receive(msg), { noAck: true });
    return client;
  }

  private receive(msg: ConsumeMessage): void {
    const at = clock();
    const { appId, correlationId } = msg.properties as { appId?: string; correlationId?: string };
    if (appId === CLIENT_APP_ID || !correlationId) return; // our own requests come back on the topic
    const list = this.replies.get(correlationId);
    if (!list) return; // not ours (or already forgotten)
    list.push({ at, appId, body: msg.content.toString() });
    const w = this.waiters.get(correlationId);
    if (w && list.length >= w.n) {
      this.waiters.delete(correlationId);
      w.done(list);
    }
  }

  /** Publishes a request; returns its correlation id and the publish time. */
  publish(topic: string, body: string): { cid: string; t0: number } {
    const cid = randomUUID();
    this.replies.set(cid, []);
    const t0 = clock();
    this.ch.publish(this.exchange, topic, Buffer.from(body), { appId: CLIENT_APP_ID, correlationId: cid, replyTo: topic, contentType: 'application/yaml' });
    return { cid, t0 };
  }

  /** Resolves with the first `n` replies to `cid`. */
  wait(cid: string, n: number, timeoutMs: number): Promise<Reply[]> {
    const list = this.replies.get(cid) ?? [];
    if (list.length >= n) return Promise.resolve(list);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(cid);
        reject(new Error(`fewer than ${n} replies to ${cid} within ${timeoutMs} ms: ${JSON.stringify(list.map((r) => r.body.slice(0, 200)))}`));
      }, timeoutMs);
      this.waiters.set(cid, {
        n,
        done: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  }

  forget(cid: string): void {
    this.replies.delete(cid);
  }

  async close(): Promise<void> {
    await this.conn.close().catch(() => {});
  }
}

/** The peer: consumes `ECHO_TOPIC` on the same exchange, republishes each body to reply_to with its own app_id. */
async function startEcho(exchange: string): Promise<ChannelModel> {
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  const { queue } = await ch.assertQueue(`q.bench.echo.${randomUUID()}`, { exclusive: true, autoDelete: true });
  await ch.bindQueue(queue, exchange, ECHO_TOPIC);
  await ch.prefetch(10);
  await ch.consume(queue, (msg) => {
    if (!msg) return;
    const { appId, correlationId, replyTo } = msg.properties as { appId?: string; correlationId?: string; replyTo?: string };
    if (appId !== ECHO_APP_ID && correlationId && replyTo) {
      ch.publish(exchange, replyTo, msg.content, { appId: ECHO_APP_ID, correlationId, contentType: 'application/yaml' });
    }
    ch.ack(msg);
  });
  return conn;
}

function createRequest(name: string, marker: string, mark: string): string {
  const vnfd = {
    descriptor_version: 'vnfd-schema-02',
    vendor: 'eu.drover.bench',
    name,
    version: '0.1',
    uuid: randomUUID(),
    // GNU sleep adds its arguments: `sleep 1000 0.000<digits>` sleeps 1000 s and carries the marker
    virtual_deployment_units: [{ id: 'vdu01', drover: { path: '/usr/bin/sleep', args: [1000, marker], env: { DROVER_BENCH_MANO: mark }, instances: 1 } }],
  };
  return stringify({
    NSD: {
      descriptor_version: 'nsd-schema-02',
      vendor: 'eu.drover.bench',
      name: `ns-${name}`,
      version: '0.1',
      uuid: randomUUID(),
      network_functions: [{ vnf_id: 'vnf0', vnf_name: vnfd.name, vnf_vendor: vnfd.vendor, vnf_version: vnfd.version }],
    },
    VNFD0: vnfd,
    user_data: { customer: { name: 'bench' } },
  });
}

const statusOf = (body: string) => /^status: (\S+)/m.exec(body)?.[1];
const idOf = (body: string) => /^service_instance_uuid: (\S+)/m.exec(body)?.[1];

/**
 * Where a terminate's time goes, from timestamps taken inside Drover (it runs in this
 * process; `clock` is shared with the client's process): wrappers on the adapter's (TypeScript-private,
 * so reached through a cast) `accept` and `publishOn`, the store's `transaction` and the event
 * bus's `committed` (its listeners run synchronously). Set up once per Drover; read per request.
 */
class Probe {
  acceptStart = 0;
  acceptEnd = 0;
  publishAt = 0;
  /** when the commit was first announced (the follow-up work starts) */
  announcedAt = 0;
  txMs = 0;
  afterTxMs = 0;
  committedMs = 0;
  publishElu?: EventLoopUtilization;
  constructor(drover: RunningDrover) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const adapter = drover.amqp as any;
    const accept = adapter.accept.bind(adapter);
    adapter.accept = async (...args: unknown[]) => {
      this.acceptStart = clock();
      try {
        return await accept(...args);
      } finally {
        this.acceptEnd = clock();
      }
    };
    const publishOn = adapter.publishOn.bind(adapter);
    adapter.publishOn = (...args: unknown[]) => {
      if (!this.publishAt) {
        this.publishAt = clock();
        this.publishElu = performance.eventLoopUtilization();
      }
      return publishOn(...args);
    };
    const store = drover.ctx.store;
    const transaction = store.transaction.bind(store);
    type Tx = Parameters<Parameters<typeof transaction>[0]>[0];
    store.transaction = async <T>(fn: (tx: Tx) => Promise<T>, opts?: Parameters<typeof transaction>[1]): Promise<T> => {
      const t = performance.now();
      try {
        return await transaction(fn, opts);
      } finally {
        // inside accept(), or the follow-up work (convergence, agent) that the commit set off
        if (this.acceptEnd === 0) this.txMs += performance.now() - t;
        else this.afterTxMs += performance.now() - t;
      }
    };
    const bus = drover.ctx.bus;
    const committed = bus.committed.bind(bus);
    bus.committed = (...args: Parameters<typeof committed>) => {
      if (!this.announcedAt) this.announcedAt = clock();
      const t = performance.now();
      try {
        return committed(...args);
      } finally {
        this.committedMs += performance.now() - t;
      }
    };
  }
  reset(): void {
    this.acceptStart = this.acceptEnd = this.publishAt = this.announcedAt = this.txMs = this.afterTxMs = this.committedMs = 0;
    this.publishElu = undefined;
  }
}

interface Breakdown {
  /** publish -> Drover's accept() starts (broker in, amqplib decode, event loop wait) */
  inbound: number;
  /** accept(): YAML decode, lookups, the terminate transaction, the bus listeners */
  accept: number;
  /** of accept: store.transaction() calls */
  tx: number;
  /** bus.committed() listeners (the announcement of the terminate's commit and any later one) */
  committed: number;
  /** reply handed to amqplib -> the commit is announced (the follow-up work may start) */
  announced: number;
  /** accept() done -> reply handed to amqplib */
  handoff: number;
  /** reply handed to amqplib -> the client has it */
  outbound: number;
  /** store transactions run after accept() by the follow-up work, before the client has the reply */
  afterTx: number;
  /** event-loop utilization of Drover's process during `outbound` */
  outboundElu: number;
}

/** Drover's process while only the echo runs: how busy its event loop is with its own work. */
interface Background {
  echoElu: number;
}

interface RoundResult {
  termP50: number;
  termP99: number;
  echoP50: number;
  echoP99: number;
  readyP50: number;
  instantiateP50: number;
  bodyBytes: number;
  breakdown: Breakdown;
  background: Background;
}

type PeerRequest =
  | { op: 'create'; name: string; marker: string; mark: string }
  | { op: 'terminate'; id: string }
  | { op: 'settled'; cid: string }
  | { op: 'echo' };
type PeerAnswer = { id: string; instantiateMs: number } | { cid: string; t0: number; first: number } | { readyMs: number } | { echoMs: number };

/** The client's side of one step: what the peer process (or the in-process client) runs. */
function peerSteps(c: Client): (r: PeerRequest) => Promise<PeerAnswer> {
  const terminating = new Map<string, number>();
  return async (r) => {
    if (r.op === 'create') {
      const { cid, t0 } = c.publish(TOPIC_CREATE, createRequest(r.name, r.marker, r.mark));
      const [first, second] = await c.wait(cid, 2, READY_TIMEOUT_MS + 5000);
      if (statusOf(first!.body) !== 'INSTANTIATING' || statusOf(second!.body) !== 'READY') throw new Error(`instantiate ${r.name}: ${first!.body.slice(0, 200)} / ${second!.body.slice(0, 300)}`);
      c.forget(cid);
      return { id: idOf(first!.body)!, instantiateMs: second!.at - t0 };
    }
    if (r.op === 'echo') {
      const echoBody = stringify({ instance_id: randomUUID() });
      const { cid, t0 } = c.publish(ECHO_TOPIC, echoBody);
      const [reply] = await c.wait(cid, 1, REPLY_TIMEOUT_MS);
      if (reply!.appId !== ECHO_APP_ID || reply!.body !== echoBody) throw new Error(`bad echo: ${reply!.appId} ${reply!.body}`);
      c.forget(cid);
      return { echoMs: reply!.at - t0 };
    }
    if (r.op === 'settled') {
      const [, second] = await c.wait(r.cid, 2, READY_TIMEOUT_MS + 5000);
      if (statusOf(second!.body) !== 'READY') throw new Error(`terminate, second reply: ${second!.body.slice(0, 300)}`);
      c.forget(r.cid);
      const readyMs = second!.at - terminating.get(r.cid)!;
      terminating.delete(r.cid);
      return { readyMs };
    }
    const { cid, t0 } = c.publish(TOPIC_TERMINATE, stringify({ instance_id: r.id }));
    terminating.set(cid, t0);
    const [first] = await c.wait(cid, 1, REPLY_TIMEOUT_MS);
    if (statusOf(first!.body) !== 'TERMINATING') throw new Error(`terminate ${r.id}: ${first!.body.slice(0, 300)}`);
    return { cid, t0, first: first!.at };
  };
}

interface Peer {
  run<A extends PeerAnswer>(r: PeerRequest): Promise<A>;
  close(): Promise<void>;
}

/** Client and echo in this process, sharing Drover's event loop. */
async function inProcessPeer(exchange: string): Promise<Peer> {
  const client = await Client.open(exchange);
  const echo = await startEcho(exchange);
  const steps = peerSteps(client);
  return {
    run: <A extends PeerAnswer>(r: PeerRequest) => steps(r) as Promise<A>,
    async close() {
      await echo.close().catch(() => {});
      await client.close();
    },
  };
}

/** Client and echo in a child process (this file with --peer), driven step by step over IPC. */
async function childPeer(exchange: string): Promise<Peer> {
  const child = fork(fileURLToPath(import.meta.url), ['--peer', exchange], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, { resolve: (a: PeerAnswer) => void; reject: (e: Error) => void }>();
  let n = 0;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.on('message', (m: { n: number; answer?: PeerAnswer; error?: string }) => {
    const p = pending.get(m.n);
    pending.delete(m.n);
    if (m.error !== undefined) p?.reject(new Error(`peer: ${m.error}`));
    else p?.resolve(m.answer!);
  });
  void exited.then(() => pending.forEach((p) => p.reject(new Error('the peer process exited'))));
  const ready = new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    void exited.then(() => reject(new Error('the peer process exited before it was ready')));
  });
  await ready;
  return {
    run: <A extends PeerAnswer>(r: PeerRequest) =>
      new Promise<A>((resolve, reject) => {
        pending.set(++n, { resolve: resolve as (a: PeerAnswer) => void, reject });
        child.send({ n, request: r });
      }),
    async close() {
      child.send({ n: 0, close: true });
      await exited;
    },
  };
}

/** --peer mode: the client and the echo, answering the parent's steps until told to close. */
async function servePeer(exchange: string): Promise<void> {
  const client = await Client.open(exchange);
  const echo = await startEcho(exchange);
  const steps = peerSteps(client);
  process.on('message', (m: { n: number; request?: PeerRequest; close?: boolean }) => {
    if (m.close) {
      void Promise.all([echo.close().catch(() => {}), client.close()]).then(() => process.exit(0));
      return;
    }
    steps(m.request!).then(
      (answer) => process.send!({ n: m.n, answer }),
      (e: Error) => process.send!({ n: m.n, error: e.message }),
    );
  });
  process.send!({ n: 0 });
}

async function oneRound(round: number): Promise<RoundResult> {
  const tag = randomTag();
  const exchange = `drover-bench-${tag}`;
  const marker = sleepMarker();
  const dataDir = tempDir(`mano-${tag}`);
  let drover: RunningDrover | undefined;
  let peer: Peer | undefined;
  try {
    drover = await startDrover({
      dataDir,
      agent: true,
      cellId: `bench-mano-${tag}`,
      http: '127.0.0.1:0',
      logLevel: 'silent',
      mqtt: 'none',
      amqp: AMQP_URL,
      amqpExchange: exchange,
      manoReadyTimeoutMs: READY_TIMEOUT_MS,
    });
    await drover.amqp!.ready();
    peer = CLIENT === 'inprocess' ? await inProcessPeer(exchange) : await childPeer(exchange);
    const probe = new Probe(drover);

    // instantiate, one after the other, each up to READY
    const ids: string[] = [];
    const instantiateMs: number[] = [];
    for (let i = 0; i < WARMUP + SERVICES; i++) {
      const created = await peer.run<{ id: string; instantiateMs: number }>({ op: 'create', name: `vnf-${tag}-${i}`, marker, mark: tag });
      instantiateMs.push(created.instantiateMs);
      ids.push(created.id);
    }

    // terminate each, paired with an echo round trip of the same body size
    const termMs: number[] = [];
    const echoMs: number[] = [];
    const readyMs: number[] = [];
    const parts: Breakdown[] = [];
    const echoElus: number[] = [];
    const bodyBytes = Buffer.byteLength(stringify({ instance_id: randomUUID() }));
    for (const [i, id] of ids.entries()) {
      const doEcho = async () => {
        const elu = performance.eventLoopUtilization();
        const { echoMs } = await peer!.run<{ echoMs: number }>({ op: 'echo' });
        if (i >= WARMUP) echoElus.push(performance.eventLoopUtilization(elu).utilization);
        return echoMs;
      };
      const doTerminate = async () => {
        probe.reset();
        const t = await peer!.run<{ cid: string; t0: number; first: number }>({ op: 'terminate', id });
        // read now: the follow-up figures count up to the first reply (plus, with the client in
        // a child process, the IPC message that reports it)
        if (i >= WARMUP) {
          parts.push({
            inbound: probe.acceptStart - t.t0,
            accept: probe.acceptEnd - probe.acceptStart,
            tx: probe.txMs,
            committed: probe.committedMs,
            announced: probe.announcedAt - probe.publishAt,
            handoff: probe.publishAt - probe.acceptEnd,
            outbound: t.first - probe.publishAt,
            afterTx: probe.afterTxMs,
            outboundElu: probe.publishElu ? performance.eventLoopUtilization(probe.publishElu).utilization : NaN,
          });
        }
        const { readyMs } = await peer!.run<{ readyMs: number }>({ op: 'settled', cid: t.cid });
        return { firstMs: t.first - t.t0, readyMs };
      };
      let e: number;
      let t: { firstMs: number; readyMs: number };
      if (i % 2 === 0) {
        e = await doEcho();
        t = await doTerminate();
      } else {
        t = await doTerminate();
        e = await doEcho();
      }
      if (i >= WARMUP) {
        echoMs.push(e);
        termMs.push(t.firstMs);
        readyMs.push(t.readyMs);
      }
    }
    const r: RoundResult = {
      termP50: percentile(termMs, 50),
      termP99: percentile(termMs, 99),
      echoP50: percentile(echoMs, 50),
      echoP99: percentile(echoMs, 99),
      readyP50: percentile(readyMs, 50),
      instantiateP50: percentile(instantiateMs, 50),
      bodyBytes,
      breakdown: {
        inbound: median(parts.map((x) => x.inbound)),
        accept: median(parts.map((x) => x.accept)),
        tx: median(parts.map((x) => x.tx)),
        committed: median(parts.map((x) => x.committed)),
        announced: median(parts.map((x) => x.announced)),
        handoff: median(parts.map((x) => x.handoff)),
        outbound: median(parts.map((x) => x.outbound)),
        afterTx: median(parts.map((x) => x.afterTx)),
        outboundElu: median(parts.map((x) => x.outboundElu)),
      },
      background: { echoElu: median(echoElus) },
    };
    console.log(
      `round ${round}: terminate -> TERMINATING p50 ${ms(r.termP50)} p99 ${ms(r.termP99)} | echo p50 ${ms(r.echoP50)} p99 ${ms(r.echoP99)} | ` +
        `p50 ${ratio(r.termP50, r.echoP50)} p99 ${ratio(r.termP99, r.echoP99)} | (terminate -> READY p50 ${ms(r.readyP50)}, instantiate -> READY p50 ${ms(r.instantiateP50)})`,
    );
    const b = r.breakdown;
    console.log(
      `  where a terminate's first reply goes (medians): broker in ${ms(b.inbound)}, accept ${ms(b.accept)} (of which transaction ${ms(b.tx)}), ` +
        `handoff ${ms(b.handoff)}, broker out ${ms(b.outbound)} (Drover's event loop busy ${(b.outboundElu * 100).toFixed(0)}% of it; follow-up transactions ${ms(b.afterTx)}); ` +
        `commit announced ${ms(b.announced)} after the handoff (bus listeners ${ms(b.committed)}); ` +
        `Drover's event loop busy ${(r.background.echoElu * 100).toFixed(0)}% during an echo round trip`,
    );
    return r;
  } finally {
    await drover?.agent?.stopAll().catch(() => {});
    await drover?.close().catch(() => {});
    const killed = await killByMarker(marker);
    if (killed) console.log(`  (killed ${killed} leftover processes)`);
    await peer?.close();
    // the broker keeps Drover's non-exclusive queues and the exchange: remove them
    const cleanup = await amqp.connect(AMQP_URL).catch(() => undefined);
    if (cleanup) {
      const ch = await cleanup.createChannel();
      for (const topic of [TOPIC_CREATE, TOPIC_TERMINATE, ...UNSUPPORTED_TOPICS]) await ch.deleteQueue(`q.${topic}.drover.${exchange}`).catch(() => {});
      await ch.deleteExchange(exchange).catch(() => {});
      await cleanup.close().catch(() => {});
    }
    removeDir(dataDir);
  }
}

if (process.argv.includes('--peer')) {
  await servePeer(arg('peer', ''));
} else {
  console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`rounds ${ROUNDS}, ${SERVICES} measured services (1 VNF each, \`sleep 1000\`) after ${WARMUP} warm-up, client ${CLIENT === 'inprocess' ? 'in this process' : 'in a child process'}, RabbitMQ ${AMQP_URL.replace(/\/\/[^@]*@/, '//')}`);
  header('MANO terminate: publish -> first reply (TERMINATING) vs a raw amqplib echo on the same exchange');
  const results: RoundResult[] = [];
  for (let round = 1; round <= ROUNDS; round++) results.push(await oneRound(round));

  header(`median of ${ROUNDS} rounds`);
  const m = (f: (x: RoundResult) => number) => median(results.map(f));
  const [tp50, tp99, ep50, ep99] = [m((x) => x.termP50), m((x) => x.termP99), m((x) => x.echoP50), m((x) => x.echoP99)];
  const verdict = (a: number, b: number) => (a / b <= 2 ? 'met' : 'NOT met');
  console.log(`request body ${results[0]!.bodyBytes} B (the echo's request and reply: the same size)`);
  console.log(`  terminate -> TERMINATING  p50 ${ms(tp50)}  p99 ${ms(tp99)}`);
  console.log(`  raw amqplib echo          p50 ${ms(ep50)}  p99 ${ms(ep99)}`);
  console.log(`  ratio                     p50 ${ratio(tp50, ep50)} (target <= 2x: ${verdict(tp50, ep50)})  p99 ${ratio(tp99, ep99)} (${verdict(tp99, ep99)})`);
  console.log(`  median of the per-round ratios: p50 ${m((x) => x.termP50 / x.echoP50).toFixed(2)}x  p99 ${m((x) => x.termP99 / x.echoP99).toFixed(2)}x`);
  console.log(`  for reference: terminate -> READY (processes stopped) p50 ${ms(m((x) => x.readyP50))}; instantiate -> READY p50 ${ms(m((x) => x.instantiateP50))}`);
  const mb = (k: keyof Breakdown) => ms(m((x) => x.breakdown[k]));
  console.log(
    `  terminate first reply, medians: broker in ${mb('inbound')}, accept ${mb('accept')} (transaction ${mb('tx')}), handoff ${mb('handoff')}, broker out ${mb('outbound')} ` +
      `(Drover's event loop busy ${(m((x) => x.breakdown.outboundElu) * 100).toFixed(0)}%, follow-up transactions ${mb('afterTx')}); commit announced ${mb('announced')} after the handoff (bus listeners ${mb('committed')}); ` +
      `Drover's event loop busy ${(m((x) => x.background.echoElu) * 100).toFixed(0)}% during an echo round trip`,
  );
  process.exit(0);
}
