// The composition root: opens the store, wires the core, starts the interfaces.

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { EventBus, type CoreContext } from './core/context.js';
import { Identities } from './core/identities.js';
import { openStore } from './store/open.js';
import { buildHttpServer, DEFAULT_BODY_LIMIT } from './api/http/server.js';
import { ConvergenceLoop } from './converge/loop.js';
import { DEFAULT_LEASE_MS, LeaderElection } from './converge/leader.js';
import { registerStatus } from './api/http/status.js';
import { CellAgent, DEFAULT_AGENT_OPTIONS } from './agent/cell-agent.js';
import { LocalControlPlane } from './agent/local-control-plane.js';
import { join as joinPath } from 'node:path';
import { DEFAULT_TOPIC_PREFIX, startMqttInterface, type MqttInterface } from './api/mqtt/locks.js';
import { watchServices } from './core/services.js';
import { keepEventLog } from './core/event-log.js';
import { RateLimiter } from './core/limits.js';
import { MAX_INSTANCES } from './model/validate.js';
// GENI (PKI, XML signatures) and MANO (AMQP client) are loaded only when enabled.
import type { GeniInterface } from './api/xmlrpc/interface.js';
import type { ManoAmqpAdapter } from './api/amqp/adapter.js';
import { DEFAULT_APP_ID, DEFAULT_EXCHANGE, DEFAULT_READY_TIMEOUT_MS } from './api/amqp/defaults.js';

export interface DroverOptions {
  dataDir: string;
  store?: string;
  http: string;
  auth?: string;
  cellId: string;
  site: string;
  sections: string[];
  agent: boolean;
  /** bearer token the in-process agent presents (when --auth is on) */
  agentToken?: string;
  cellTtlMs: number;
  convergeIntervalMs: number;
  startWindowMs: number;
  /** false: the in-process agent starts processes on the main thread, not through drover-spawner */
  spawnHelper?: boolean;
  /** the largest request body over HTTP (BBS, Era, Arrowhead locks) and HTTPS (GENI), in bytes */
  bodyLimit: number;
  /** the largest MQTT (Arrowhead) or AMQP (MANO) request message decoded, in bytes */
  messageLimit: number;
  /** requests per second each principal may make over all interfaces; 0: no limit */
  rateLimit: number;
  /** requests a principal may make at once after being idle (default: one second's worth, at least 1) */
  rateBurst?: number;
  /** the most instances one DesiredLRP may have (BBS desire/update, MANO VNFs, GENI nodes) */
  maxInstances: number;
  logLevel: string;
  /** embedded (the default when unset), none, or an external broker's mqtt:// / mqtts:// URL */
  mqtt?: string;
  /** the embedded broker's plain MQTT address */
  mqttListen: string;
  /** the embedded broker's MQTTS address, used when mqttTlsCert and mqttTlsKey are given */
  mqttsListen: string;
  mqttTlsCert?: string;
  mqttTlsKey?: string;
  /** the Arrowhead base topic; the lock topics are `<prefix>/orchestration/management/lock/...` */
  mqttTopicPrefix: string;
  /** PEM CA bundle that the client certificates of Arrowhead's certificate policy must be issued by */
  arrowheadCa?: string;
  amqp?: string;
  /** the MANO topic exchange */
  amqpExchange: string;
  /** Drover's app_id on the MANO bus */
  amqpAppId: string;
  /** how long a MANO instantiation (or termination) may take before its second reply is ERROR */
  manoReadyTimeoutMs: number;
  /** the GENI AM API's HTTPS address (HOST:PORT); off when unset */
  geni?: string;
  /** PEM files of the GENI endpoint: all three or none (then Drover makes its own in <data-dir>/pki/) */
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  /** GENI: the TLS client certificate alone authorizes, no credentials are needed */
  geniTrustCerts?: boolean;
  /** this replica's id in leader election and /status (default: hostname-pid) */
  replicaId?: string;
  /** PostgreSQL: how long the leader lease lasts without renewal */
  leaseMs: number;
  /** how long the event log keeps events (ms); 0 keeps them all */
  eventRetentionMs: number;
  /** how often the leader prunes the event log */
  eventPruneIntervalMs: number;
  /** PostgreSQL: how often the lease is renewed or tried (default: leaseMs / 3) */
  leaseRenewMs?: number;
}

export const DEFAULT_OPTIONS: DroverOptions = {
  dataDir: './.drover',
  http: '127.0.0.1:8889',
  cellId: hostname(),
  site: '',
  sections: [],
  agent: true,
  cellTtlMs: DEFAULT_AGENT_OPTIONS.ttlMs,
  convergeIntervalMs: 1000,
  startWindowMs: DEFAULT_AGENT_OPTIONS.startWindowMs,
  bodyLimit: DEFAULT_BODY_LIMIT,
  messageLimit: DEFAULT_BODY_LIMIT,
  rateLimit: 0,
  maxInstances: MAX_INSTANCES,
  logLevel: 'info',
  mqttListen: '127.0.0.1:1884',
  mqttsListen: '127.0.0.1:8884',
  mqttTopicPrefix: DEFAULT_TOPIC_PREFIX,
  amqpExchange: DEFAULT_EXCHANGE,
  amqpAppId: DEFAULT_APP_ID,
  manoReadyTimeoutMs: DEFAULT_READY_TIMEOUT_MS,
  leaseMs: DEFAULT_LEASE_MS,
  eventRetentionMs: 24 * 60 * 60 * 1000,
  eventPruneIntervalMs: 60 * 1000,
};

export interface RunningDrover {
  ctx: CoreContext;
  /** the bound HTTP address, e.g. http://127.0.0.1:8889 */
  url: string;
  agent?: CellAgent;
  convergence: ConvergenceLoop;
  leader: LeaderElection;
  mqtt?: MqttInterface;
  amqp?: ManoAmqpAdapter;
  geni?: GeniInterface;
  close(): Promise<void>;
}

export function splitHostPort(value: string, flag: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const port = Number(value.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${flag} must be HOST:PORT, got ${value}`);
  return { host: value.slice(0, i), port };
}

/** MQTT is on unless `mqtt` is `none`. Only an explicit MQTT setting may stop start-up: the
 * implicit default (embedded broker on 127.0.0.1:1884) logs and goes on when that port is taken. */
async function startMqtt(options: DroverOptions, ctx: CoreContext, identities: Identities, log: Logger): Promise<MqttInterface | undefined> {
  if (options.mqtt === 'none') return undefined;
  if (!options.mqttTlsCert !== !options.mqttTlsKey) throw new Error('--mqtt-tls-cert and --mqtt-tls-key go together');
  const mqtts = options.mqttTlsCert && options.mqttTlsKey
    ? { ...splitHostPort(options.mqttsListen, '--mqtts-listen'), certFile: options.mqttTlsCert, keyFile: options.mqttTlsKey }
    : undefined;
  try {
    return await startMqttInterface(ctx, identities, log.child({ api: 'mqtt' }), {
      broker: options.mqtt ?? 'embedded',
      embedded: { listen: splitHostPort(options.mqttListen, '--mqtt-listen'), mqtts },
      topicPrefix: options.mqttTopicPrefix,
      messageLimit: options.messageLimit,
    });
  } catch (e) {
    if (options.mqtt || options.mqttListen !== DEFAULT_OPTIONS.mqttListen || mqtts) throw e;
    log.error({ err: (e as Error).message }, 'embedded MQTT broker not started (--mqtt none turns MQTT off)');
    return undefined;
  }
}

export async function startDrover(partial: Partial<DroverOptions>, log: Logger = pino({ level: partial.logLevel ?? 'info' })): Promise<RunningDrover> {
  const options = { ...DEFAULT_OPTIONS, ...partial };
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const identities = options.auth ? Identities.fromFile(options.auth) : Identities.openMode();
  if (options.arrowheadCa) identities.trustAuthorities(readFileSync(options.arrowheadCa, 'utf8'));
  if (identities.open) log.warn('no --auth file: open mode, every caller is an operator');
  const store = await openStore(options.store, dataDir);
  const rate = new RateLimiter({ perSecond: options.rateLimit, burst: options.rateBurst ?? Math.max(1, Math.ceil(options.rateLimit)) });
  const ctx: CoreContext = { store, bus: new EventBus(), log, now: Date.now, limits: { maxInstances: options.maxInstances, rate } };
  const mqtt = await startMqtt(options, ctx, identities, log);
  // lastPass is read at scrape time, once `convergence` (below) exists.
  const http = await buildHttpServer(ctx, identities, log, { bodyLimit: options.bodyLimit, dataDir, lastPass: () => convergence.lastPass });
  // Only the replica holding the lease converges and watches services (SQLite: always this one).
  const leader = new LeaderElection(
    store,
    { holder: options.replicaId ?? `${hostname()}-${process.pid}`, leaseMs: options.leaseMs, renewMs: options.leaseRenewMs ?? Math.max(1, Math.floor(options.leaseMs / 3)) },
    log,
  );
  registerStatus(http, ctx, leader);
  const { host, port } = splitHostPort(options.http, '--http');
  await http.listen({ host, port });
  const address = http.server.address();
  const url = `http://${host}:${typeof address === 'object' && address ? address.port : port}`;
  const convergence = new ConvergenceLoop(ctx, { intervalMs: options.convergeIntervalMs, debounceMs: 50, isLeader: () => leader.isLeader(), fence: () => leader.fence() });
  convergence.start();
  let stopWatchingServices: (() => Promise<void>) | undefined;
  let watcherChange = Promise.resolve();
  leader.on('change', (leading) => {
    watcherChange = watcherChange.then(async () => {
      if (leading && !stopWatchingServices) stopWatchingServices = watchServices(ctx, options.convergeIntervalMs, () => leader.fence());
      if (!leading && stopWatchingServices) {
        const stop = stopWatchingServices;
        stopWatchingServices = undefined;
        await stop();
      }
    });
    if (leading) convergence.trigger();
  });
  await leader.start();
  const stopPruning = keepEventLog(ctx, { retentionMs: options.eventRetentionMs, intervalMs: options.eventPruneIntervalMs, isLeader: () => leader.isLeader(), fence: () => leader.fence() });
  // The in-process agent calls the core directly, as the principal its token names; remote agents use HTTP.
  const agent = options.agent
    ? new CellAgent(
        new LocalControlPlane(ctx, identities.resolve('tokens', options.agentToken), url, options.agentToken),
        {
          ...DEFAULT_AGENT_OPTIONS,
          cellId: options.cellId,
          site: options.site,
          sections: options.sections,
          dataDir: joinPath(dataDir, 'cells', options.cellId),
          ttlMs: options.cellTtlMs,
          startWindowMs: options.startWindowMs,
          spawnHelper: options.spawnHelper ?? DEFAULT_AGENT_OPTIONS.spawnHelper,
        },
        log.child({ cell: options.cellId }),
      )
    : undefined;
  await agent?.start();
  const amqp = options.amqp
    ? new (await import('./api/amqp/adapter.js')).ManoAmqpAdapter(ctx, identities, log.child({ api: 'amqp' }), {
        url: options.amqp,
        exchange: options.amqpExchange,
        appId: options.amqpAppId,
        readyTimeoutMs: options.manoReadyTimeoutMs,
        messageLimit: options.messageLimit,
      })
    : undefined;
  await amqp?.start();
  const geni = options.geni
    ? await (await import('./api/xmlrpc/interface.js')).startGeniInterface(ctx, identities, log.child({ api: 'geni' }), {
        ...splitHostPort(options.geni, '--geni'),
        dataDir,
        tlsCert: options.tlsCert,
        tlsKey: options.tlsKey,
        tlsCa: options.tlsCa,
        bodyLimit: options.bodyLimit,
        am: { trustCerts: options.geniTrustCerts },
      })
    : undefined;
  log.info({ url, store: store.kind, dataDir, cellId: agent?.cellId }, 'drover is serving');
  return {
    ctx,
    url,
    agent,
    convergence,
    leader,
    mqtt,
    amqp,
    geni,
    async close() {
      await geni?.close();
      await amqp?.close();
      convergence.stop();
      await stopPruning();
      await leader.stop();
      await watcherChange;
      await stopWatchingServices?.();
      await agent?.close();
      await mqtt?.close();
      await http.close();
      await store.close();
    },
  };
}
