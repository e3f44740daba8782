// Arrowhead locks over MQTT (issue 6), through the embedded broker (Aedes) and through the
// Mosquitto on 127.0.0.1:1883, each against a raw MQTT echo through the same broker in the
// same run:
//   (a) lock create round trip: one lock per request, unique serviceInstanceIds, sequential,
//       QoS 1 both ways; <warmup> unmeasured, then <requests> measured — p50 / p99. Each
//       measured lock request is paired with one echo request (order alternating), so load
//       drift on the machine hits both alike. The echo is a second mqtt.js client subscribed
//       to a request topic that republishes each message (same bytes) to its responseTopic.
//       Each create is also timed in stages inside Drover (see Stages).
//   (b) bulk create: <bulk> locks in one request, and <bulk>/10 locks x 10 requests
//       (sequential) — wall time; the echo gets the same payloads.
//
//   node dist/bench/locks-mqtt.js [--rounds 3] [--requests 500] [--warmup 50] [--bulk 10000]
//        [--brokers embedded,mosquitto,mosquitto-nodelay]
//
// `mosquitto` is the system Mosquitto on 127.0.0.1:1883 (its configuration has no
// `set_tcp_nodelay`, so its sockets keep Nagle's algorithm). `mosquitto-nodelay` is a private
// Mosquitto this benchmark starts on a free port with `set_tcp_nodelay true` and no
// persistence (a temp config; killed by pid at the end) — the configuration the docs advise.
//
// Each round starts a fresh Drover (SQLite in a temp dir, no agent) per broker, with a unique
// topic prefix (the Mosquitto is shared); every client socket has TCP no-delay set, as
// docs/arrowhead-locks.md advises. Everything is closed and the temp dirs removed at the end.

import { performance } from 'node:perf_hooks';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { freePort, header, median, ms, percentile, randomTag, ratio, removeDir, stopChild, tempDir, waitFor } from './common.js';
import { connect as tcpConnect } from 'node:net';

const MOSQUITTO_URL = 'mqtt://127.0.0.1:1883';
const LOCK_TOPIC = 'orchestration/management/lock';
const OWNER = 'BenchOwner';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const ROUNDS = Number(arg('rounds', '3'));
const REQUESTS = Number(arg('requests', '500'));
const WARMUP = Number(arg('warmup', '50'));
const BULK = Number(arg('bulk', '10000'));
const BROKERS = arg('brokers', 'embedded,mosquitto,mosquitto-nodelay').split(',');
const REQUEST_TIMEOUT_MS = 10_000;
const BULK_TIMEOUT_MS = 120_000;

const inHours = (h: number) => new Date(Math.floor(Date.now() / 1000) * 1000 + h * 3_600_000).toISOString().replace('.000Z', 'Z');

function noDelayOnConnect(client: MqttClient): void {
  const set = () => (client.stream as unknown as Socket).setNoDelay?.(true);
  client.on('connect', set);
  set();
}

/** Publishes requests and awaits answers on response topics of its own; measures in ms. */
class Requester {
  private readonly waiting = new Map<string, (text: string) => void>();
  private n = 0;
  private constructor(
    private readonly client: MqttClient,
    readonly base: string,
  ) {
    client.on('message', (topic, message) => {
      const done = this.waiting.get(topic);
      if (!done) return;
      this.waiting.delete(topic);
      done(message.toString('utf8'));
    });
  }

  static async connect(url: string, base: string): Promise<Requester> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, clientId: `bench-req-${randomTag()}` });
    noDelayOnConnect(client);
    await client.subscribeAsync(`${base}/#`, { qos: 1 });
    return new Requester(client, base);
  }

  /** A fresh response topic; `kind` is one character so lock and echo topics have one length. */
  responseTopic(kind: 'l' | 'e'): string {
    return `${this.base}/${kind}/${String(++this.n).padStart(8, '0')}`;
  }

  /** Publishes `text` to `topic` (QoS 1) and resolves with the answer text and the elapsed ms. */
  request(topic: string, text: string, responseTopic: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<{ t0: number; ms: number; answer: string }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(responseTopic);
        reject(new Error(`no answer on ${responseTopic} within ${timeoutMs} ms`));
      }, timeoutMs);
      const t0 = performance.now();
      this.waiting.set(responseTopic, (answer) => {
        clearTimeout(timer);
        resolve({ t0, ms: performance.now() - t0, answer });
      });
      this.client.publish(topic, text, { qos: 1 }, (err) => {
        if (err) {
          clearTimeout(timer);
          this.waiting.delete(responseTopic);
          reject(err);
        }
      });
    });
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}

/** The peer: subscribed to a request topic, republishes each message as is to its responseTopic. */
async function startEcho(url: string, requestTopic: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, clientId: `bench-echo-${randomTag()}` });
  noDelayOnConnect(client);
  client.on('message', (_topic, message) => {
    let responseTopic: unknown;
    try {
      responseTopic = (JSON.parse(message.toString('utf8')) as { responseTopic?: unknown }).responseTopic;
    } catch {
      return;
    }
    if (typeof responseTopic === 'string') client.publish(responseTopic, message, { qos: 1 });
  });
  // QoS 2, as Drover subscribes: the request's own QoS (1) is what is delivered
  await client.subscribeAsync(requestTopic, { qos: 2 });
  return client;
}

function lockBody(tag: string, first: number, count: number, responseTopic: string, traceId: string): string {
  const expiresAt = inHours(2);
  const locks = Array.from({ length: count }, (_, k) => ({ serviceInstanceId: `Bench${tag}n${String(first + k).padStart(8, '0')}|svc|1.0.0`, owner: OWNER, expiresAt }));
  return JSON.stringify({ traceId, responseTopic, qosRequirement: 1, payload: { locks } });
}

function checkCreated(answer: string, count: number): void {
  const a = JSON.parse(answer) as { status?: number; payload?: { count?: number } };
  if (a.status !== 201 || a.payload?.count !== count) throw new Error(`lock create failed: ${answer.slice(0, 300)}`);
}

/**
 * A create round trip in stages, from timestamps taken in this process (Drover runs in it):
 * the requester's publish, Drover's transport delivering the message, the store transaction's
 * start and end, Drover handing the answer to its transport, the requester receiving it.
 */
interface Stages {
  /** publish -> Drover has the request (broker in: in the embedded broker, its in-process subscription; with an external one, Drover's client) */
  inbound: number;
  /** -> the transaction starts: JSON decode, identity, validation */
  decode: number;
  /** the store transaction */
  tx: number;
  /** -> the answer is handed to the transport: the answer's JSON */
  encode: number;
  /** -> the requester has the answer (broker out) */
  outbound: number;
}

const STAGES: (keyof Stages)[] = ['inbound', 'decode', 'tx', 'encode', 'outbound'];

interface RoundResult {
  broker: string;
  lockP50: number;
  lockP99: number;
  echoP50: number;
  echoP99: number;
  lockTx: number;
  /** medians of the create round trip's stages, see Stages */
  stages: Stages;
  lockBytes: number;
  answerBytes: number;
  bulkTx: number;
  bulkLock: number;
  bulkEcho: number;
  bulkBytes: number;
  tenLock: number;
  tenEcho: number;
}

/** A private Mosquitto with TCP no-delay on a free port; its pid is the handle to stop it. */
async function startPrivateMosquitto(): Promise<{ url: string; child: ChildProcess; dir: string }> {
  const dir = tempDir('mosquitto');
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nlog_dest none\n`);
  const child = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
  const canConnect = () =>
    new Promise<boolean>((resolve) => {
      const s = tcpConnect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  try {
    await waitFor('the private Mosquitto', canConnect, 10_000, 50);
  } catch (e) {
    await stopChild(child, 2000);
    removeDir(dir);
    throw e;
  }
  return { url: `mqtt://127.0.0.1:${port}`, child, dir };
}

async function oneRound(brokerName: string, round: number): Promise<RoundResult> {
  const tag = randomTag();
  const prefix = `drover-bench/${tag}/arrowhead`;
  const dataDir = tempDir(`locks-${tag}`);
  let drover: RunningDrover | undefined;
  let requester: Requester | undefined;
  let echo: MqttClient | undefined;
  const privateBroker = brokerName === 'mosquitto-nodelay' ? await startPrivateMosquitto() : undefined;
  try {
    drover = await startDrover({
      dataDir,
      http: '127.0.0.1:0',
      agent: false,
      logLevel: 'silent',
      convergeIntervalMs: 3_600_000,
      mqtt: brokerName === 'mosquitto' ? MOSQUITTO_URL : privateBroker ? privateBroker.url : 'embedded',
      mqttListen: '127.0.0.1:0',
      mqttTopicPrefix: prefix,
      // the bulk create of 10,000 locks is one message of about 2 MB, over the default limit
      messageLimit: 16 * 1024 * 1024,
    });
    const url = drover.mqtt!.brokerUrl;
    // Where Drover's time goes (see Stages): wrappers on the store's transactions — its
    // transaction() and insertLocks(), which is lock create's own transaction and may call
    // transaction() — and on the lock transport (the embedded broker's in-process API, or
    // Drover's MQTT client of an external broker).
    let txMs = 0;
    const at = { received: 0, txStart: 0, txEnd: 0, answered: 0 };
    const store = drover.ctx.store;
    let depth = 0;
    const timed =
      <A extends unknown[], R>(f: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        if (depth++ === 0) at.txStart = performance.now();
        try {
          return await f(...args);
        } finally {
          if (--depth === 0) {
            at.txEnd = performance.now();
            txMs += at.txEnd - at.txStart;
          }
        }
      };
    store.transaction = timed(store.transaction.bind(store)) as typeof store.transaction;
    store.insertLocks = timed(store.insertLocks.bind(store));
    const transport = drover.mqtt!.transport;
    const deliver = transport.deliver;
    transport.deliver = (topic, message) => {
      at.received = performance.now();
      deliver(topic, message);
    };
    const publish = transport.publish.bind(transport);
    transport.publish = (...args) => {
      at.answered = performance.now();
      publish(...args);
    };
    const createTopic = `${prefix}/${LOCK_TOPIC}/create`;
    const echoTopic = `${prefix}/bench/echo`;
    echo = await startEcho(url, echoTopic);
    requester = await Requester.connect(url, `drover-bench/${tag}/answers`);
    const r = requester;

    // (a) round trips, interleaved lock / echo
    const lockMs: number[] = [];
    const lockTxMs: number[] = [];
    const stages: Stages[] = [];
    const echoMs: number[] = [];
    let lockBytes = 0;
    let answerBytes = 0;
    for (let i = 0; i < WARMUP + REQUESTS; i++) {
      const lt = r.responseTopic('l');
      const et = r.responseTopic('e');
      const lockText = lockBody(tag, i, 1, lt, `t${String(i).padStart(8, '0')}`);
      const echoText = lockBody(tag, i, 1, et, `t${String(i).padStart(8, '0')}`);
      const doLock = async () => {
        txMs = 0;
        const res = await r.request(createTopic, lockText, lt);
        if (i >= WARMUP) {
          lockTxMs.push(txMs);
          stages.push({
            inbound: at.received - res.t0,
            decode: at.txStart - at.received,
            tx: at.txEnd - at.txStart,
            encode: at.answered - at.txEnd,
            outbound: res.t0 + res.ms - at.answered,
          });
        }
        checkCreated(res.answer, 1);
        answerBytes = Buffer.byteLength(res.answer);
        return res.ms;
      };
      const doEcho = async () => (await r.request(echoTopic, echoText, et)).ms;
      let l: number;
      let e: number;
      if (i % 2 === 0) {
        l = await doLock();
        e = await doEcho();
      } else {
        e = await doEcho();
        l = await doLock();
      }
      if (i >= WARMUP) {
        lockMs.push(l);
        echoMs.push(e);
      }
      lockBytes = Buffer.byteLength(lockText);
    }

    // (b) bulk: BULK in one request, then 10 x BULK/10
    const bulkTopicL = r.responseTopic('l');
    const bulkTopicE = r.responseTopic('e');
    const bulkText = lockBody(`${tag}b`, 0, BULK, bulkTopicL, 'bulk');
    const bulkEchoText = lockBody(`${tag}b`, 0, BULK, bulkTopicE, 'bulk');
    const bulkEcho = (await r.request(echoTopic, bulkEchoText, bulkTopicE, BULK_TIMEOUT_MS)).ms;
    txMs = 0;
    const bulk = await r.request(createTopic, bulkText, bulkTopicL, BULK_TIMEOUT_MS);
    const bulkTx = txMs;
    checkCreated(bulk.answer, BULK);
    const tenth = Math.floor(BULK / 10);
    let tenLock = 0;
    let tenEcho = 0;
    for (let k = 0; k < 10; k++) {
      const lt = r.responseTopic('l');
      const et = r.responseTopic('e');
      tenEcho += (await r.request(echoTopic, lockBody(`${tag}t`, k * tenth, tenth, et, `ten${k}`), et, BULK_TIMEOUT_MS)).ms;
      const res = await r.request(createTopic, lockBody(`${tag}t`, k * tenth, tenth, lt, `ten${k}`), lt, BULK_TIMEOUT_MS);
      checkCreated(res.answer, tenth);
      tenLock += res.ms;
    }

    const result: RoundResult = {
      broker: brokerName,
      lockP50: percentile(lockMs, 50),
      lockP99: percentile(lockMs, 99),
      echoP50: percentile(echoMs, 50),
      echoP99: percentile(echoMs, 99),
      lockTx: median(lockTxMs),
      stages: Object.fromEntries(STAGES.map((k) => [k, median(stages.map((x) => x[k]))])) as unknown as Stages,
      bulkTx,
      lockBytes,
      answerBytes,
      bulkLock: bulk.ms,
      bulkEcho,
      bulkBytes: Buffer.byteLength(bulkText),
      tenLock,
      tenEcho,
    };
    console.log(
      `round ${round} ${brokerName.padEnd(17)}  create p50 ${ms(result.lockP50)} p99 ${ms(result.lockP99)} | echo p50 ${ms(result.echoP50)} p99 ${ms(result.echoP99)} | ` +
        `p50 ${ratio(result.lockP50, result.echoP50)} p99 ${ratio(result.lockP99, result.echoP99)} | ` +
        `create's store transaction p50 ${ms(result.lockTx)} | stages ${STAGES.map((k) => `${k} ${ms(result.stages[k])}`).join(', ')} | bulk ${BULK}: ${ms(result.bulkLock)} (transaction ${ms(result.bulkTx)}) vs echo ${ms(result.bulkEcho)} | 10x${tenth}: ${ms(result.tenLock)} vs echo ${ms(result.tenEcho)}`,
    );
    return result;
  } finally {
    await requester?.close().catch(() => {});
    await echo?.endAsync(true).catch(() => {});
    await drover?.close().catch(() => {});
    if (privateBroker) {
      await stopChild(privateBroker.child, 5000);
      removeDir(privateBroker.dir);
    }
    removeDir(dataDir);
  }
}

console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(`rounds ${ROUNDS}, ${REQUESTS} measured requests after ${WARMUP} warm-up, bulk ${BULK}, brokers ${BROKERS.join(', ')}`);
header('Arrowhead lock create over MQTT vs a raw MQTT echo through the same broker (QoS 1, sequential)');
const results: RoundResult[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  for (const broker of BROKERS) results.push(await oneRound(broker, round));
}

header(`median of ${ROUNDS} rounds`);
const TARGET = 2;
for (const broker of BROKERS) {
  const rs = results.filter((x) => x.broker === broker);
  const m = (f: (x: RoundResult) => number) => median(rs.map(f));
  const [lp50, lp99, ep50, ep99] = [m((x) => x.lockP50), m((x) => x.lockP99), m((x) => x.echoP50), m((x) => x.echoP99)];
  const verdict = (a: number, b: number) => (a / b <= TARGET ? 'met' : 'NOT met');
  console.log(`${broker}: request ${rs[0]!.lockBytes} B, Drover's answer ${rs[0]!.answerBytes} B (the echo answers with the request's ${rs[0]!.lockBytes} B)`);
  console.log(`  lock create round trip  p50 ${ms(lp50)}  p99 ${ms(lp99)}`);
  console.log(`  of which the store transaction, median: ${ms(m((x) => x.lockTx))}`);
  console.log(`  stages (medians): ${STAGES.map((k) => `${k} ${ms(m((x) => x.stages[k]))}`).join(', ')}`);
  console.log(`  raw MQTT echo           p50 ${ms(ep50)}  p99 ${ms(ep99)}`);
  console.log(`  ratio                   p50 ${ratio(lp50, ep50)} (target <= ${TARGET}x: ${verdict(lp50, ep50)})  p99 ${ratio(lp99, ep99)} (${verdict(lp99, ep99)})`);
  console.log(`  median of the per-round ratios: p50 ${median(rs.map((x) => x.lockP50 / x.echoP50)).toFixed(2)}x  p99 ${median(rs.map((x) => x.lockP99 / x.echoP99)).toFixed(2)}x`);
  console.log(`  bulk ${BULK} locks, one request (${(rs[0]!.bulkBytes / 1024).toFixed(0)} KiB): ${ms(m((x) => x.bulkLock))} (store transaction ${ms(m((x) => x.bulkTx))}) vs echo ${ms(m((x) => x.bulkEcho))} = ${ratio(m((x) => x.bulkLock), m((x) => x.bulkEcho))}`);
  console.log(`  10 requests x ${Math.floor(BULK / 10)} locks, total: ${ms(m((x) => x.tenLock))} vs echo ${ms(m((x) => x.tenEcho))} = ${ratio(m((x) => x.tenLock), m((x) => x.tenEcho))}`);
}
process.exit(0);
