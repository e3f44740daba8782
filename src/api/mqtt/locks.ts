// The Arrowhead serviceOrchestrationLockManagement interface over MQTT (generic_mqtt and
// generic_mqtts). Drover is an MQTT client of a broker — the embedded one or an external
// one — subscribed to `<prefix>/orchestration/management/lock/{create,query,remove}` (on an
// external broker as one shared subscription of all replicas); each request names the topic
// and QoS of its answer.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { createLocks, queryLocks, removeLocks } from '../../core/locks.js';
import type { Principal } from '../../model/principal.js';
import { fail } from '../../model/errors.js';
import { lockListDto } from '../../model/lock.js';
import { takeRequestToken } from '../../core/limits.js';
import { authenticated, errorResponse, identifyCaller, parseJson } from './arrowhead.js';
import { startEmbeddedBroker, type BrokerOptions } from './broker.js';

export const DEFAULT_TOPIC_PREFIX = 'arrowhead/serviceorchestration';
const LOCK_TOPIC = 'orchestration/management/lock';
/**
 * The shared-subscription group of Drover replicas on an external broker: the broker hands
 * each request to one member, so it is handled and answered once however many replicas run.
 */
const SHARE_GROUP = 'drover';
/** How long start-up waits for the first subscription before going on (the client keeps retrying). */
const FIRST_CONNECT_MS = 5000;

/** MQTTRequestTemplate: traceId, authentication, responseTopic, qosRequirement, params, payload. */
type RequestTemplate = Record<string, unknown>;

interface Operation {
  status: number;
  run(ctx: CoreContext, p: Principal, request: RequestTemplate): Promise<object | undefined>;
}

const payloadOf = (r: RequestTemplate) => (typeof r.payload === 'string' ? parseJson(r.payload) : r.payload);

function paramsOf(r: RequestTemplate): Record<string, unknown> {
  if (r.params === undefined || r.params === null) return {};
  if (typeof r.params !== 'object' || Array.isArray(r.params)) fail('invalid_request', 'Could not parse params: params must be an object');
  return r.params as Record<string, unknown>;
}

const OPERATIONS: Record<string, Operation> = {
  create: { status: 201, run: async (ctx, p, r) => lockListDto(await createLocks(ctx, p, payloadOf(r))) },
  query: { status: 200, run: async (ctx, p, r) => lockListDto(await queryLocks(ctx, p, payloadOf(r))) },
  remove: {
    status: 200,
    run: async (ctx, p, r) => {
      await removeLocks(ctx, p, paramsOf(r).owner, payloadOf(r));
      return undefined; // the answer to remove carries no payload
    },
  },
};

/** The responseTopic of a request too large to parse: the first one its text names. */
function responseTopicOf(message: Buffer): string | undefined {
  const m = /"responseTopic"\s*:\s*"([^"\\]{1,1024})"/.exec(message.toString('latin1'));
  return m ? Buffer.from(m[1]!, 'latin1').toString('utf8') : undefined;
}

/** MQTT encodes a topic's length in two bytes: a longer one would corrupt the packet. */
const MAX_TOPIC_BYTES = 65_535;

/** A topic we can publish the answer to: a non-empty name without wildcards that MQTT can carry. */
const usableTopic = (t: unknown): t is string => typeof t === 'string' && t !== '' && !/[+#\0]/.test(t) && Buffer.byteLength(t) <= MAX_TOPIC_BYTES;

export interface MqttInterfaceOptions {
  /** `embedded` or the URL of an external broker (mqtt://, mqtts://) */
  broker: string;
  /** the embedded broker's listeners */
  embedded: BrokerOptions;
  topicPrefix: string;
  /** the largest request message decoded, in bytes */
  messageLimit: number;
}

export interface MqttInterface {
  /** where the lock client is connected */
  brokerUrl: string;
  /** the embedded broker's MQTTS address, when it has one */
  mqttsUrl?: string;
  /** Drover's own connection to the broker (bench/locks-mqtt.ts times its messages) */
  client: MqttClient;
  close(): Promise<void>;
}

/** The broker URL for the log: a password in it is a secret. */
function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

export async function startMqttInterface(ctx: CoreContext, identities: Identities, log: Logger, options: MqttInterfaceOptions): Promise<MqttInterface> {
  const external = /^(mqtts?|tcp|ssl|tls):\/\//.test(options.broker);
  if (!external && options.broker !== 'embedded') throw new Error(`--mqtt must be embedded, none, mqtt://... or mqtts://..., got ${options.broker}`);
  const broker = external ? undefined : await startEmbeddedBroker(options.embedded, log);
  const brokerUrl = broker?.url ?? options.broker;
  const shownUrl = withoutPassword(brokerUrl);
  const operations = new Map(Object.entries(OPERATIONS).map(([name, op]) => [`${options.topicPrefix}/${LOCK_TOPIC}/${name}`, op]));

  const client: MqttClient = mqtt.connect(brokerUrl, {
    protocolVersion: 4,
    clientId: `drover-${randomBytes(6).toString('hex')}`,
    clean: true,
    reconnectPeriod: 1000,
    // subscriptions are made on every connect (below), also after a broker restart
    resubscribe: false,
    // mqtt-packet otherwise builds, on its first write, 65,536 two-byte Buffers of packet ids and
    // lengths and keeps them: 6.5 MiB of heap. The setting is process-wide (the embedded broker
    // shares the module); a 2-byte Buffer per write costs next to nothing.
    writeCache: false,
  });

  const handle = async (topic: string, message: Buffer) => {
    const op = operations.get(topic);
    if (!op) return;
    // an oversized request is not parsed: only its responseTopic is looked for, to answer 413
    const oversized = message.length > options.messageLimit;
    let request: RequestTemplate;
    try {
      request = oversized ? { responseTopic: responseTopicOf(message) } : JSON.parse(message.toString('utf8'));
    } catch {
      request = {};
    }
    if (typeof request !== 'object' || request === null || !usableTopic(request.responseTopic)) {
      log.warn({ topic }, 'dropped an MQTT request without a usable responseTopic: there is nowhere to answer');
      return;
    }
    const caller = identifyCaller(identities, request.authentication);
    let status = op.status;
    let payload: object | undefined;
    try {
      if (oversized) fail('limit_exceeded', `Request is larger than ${options.messageLimit} bytes`);
      const p = authenticated(caller);
      takeRequestToken(ctx, p);
      payload = await op.run(ctx, p, request);
    } catch (e) {
      const error = errorResponse(e, topic, log);
      [status, payload] = [error.errorCode, error];
    }
    const qos = request.qosRequirement === 1 || request.qosRequirement === 2 ? request.qosRequirement : 0;
    const answer = JSON.stringify({ status, traceId: request.traceId, receiver: caller.receiver, payload });
    client.publish(request.responseTopic, answer, { qos }, (err) => {
      if (err) log.warn({ err: err.message, responseTopic: request.responseTopic }, 'could not publish an MQTT answer');
    });
  };

  const subscribed = new Promise<void>((resolve) => {
    client.on('connect', () => {
      // See broker.ts: without no-delay every answer waits for Nagle's timer.
      (client.stream as unknown as Socket).setNoDelay?.(true);
      // requests still arrive under their own topic names
      const filters = [...operations.keys()].map((t) => (external ? `$share/${SHARE_GROUP}/${t}` : t));
      client.subscribe(filters, { qos: 2 }, (err) => {
        if (err) return log.error({ err: err.message }, 'could not subscribe to the lock topics');
        log.info({ broker: shownUrl, topics: [...operations.keys()] }, 'serving Arrowhead locks over MQTT');
        resolve();
      });
    });
  });
  client.on('message', (topic, message) => handle(topic, message).catch((err) => log.error({ err, topic }, 'MQTT request handling failed')));
  client.on('error', (err) => log.warn({ err: err.message, broker: shownUrl }, 'MQTT client error'));
  client.on('offline', () => log.warn({ broker: shownUrl }, 'MQTT broker unreachable; reconnecting'));

  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), FIRST_CONNECT_MS)));
  if (!(await Promise.race([subscribed.then(() => true), waited]))) log.warn({ broker: shownUrl }, 'MQTT broker not reached yet; will keep trying');
  clearTimeout(timer);

  return {
    brokerUrl,
    mqttsUrl: broker?.mqttsUrl,
    client,
    async close() {
      await client.endAsync(!client.connected);
      await broker?.close();
    },
  };
}
