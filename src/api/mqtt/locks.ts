// The Arrowhead serviceOrchestrationLockManagement interface over MQTT (generic_mqtt and
// generic_mqtts). Drover serves `<prefix>/orchestration/management/lock/{create,query,remove}`
// of a broker — inside the embedded one through its in-process API, or as an MQTT client of an
// external one (one shared subscription of all replicas; see transport.ts); each request names
// the topic and QoS of its answer.

import type { Logger } from 'pino';
import type { CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { createLocks, queryLocks, removeLocks } from '../../core/locks.js';
import type { Principal } from '../../model/principal.js';
import { fail } from '../../model/errors.js';
import { lockListDto } from '../../model/lock.js';
import { takeRequestToken } from '../../core/limits.js';
import { authenticated, errorResponse, identifyCaller, parseJson } from './arrowhead.js';
import type { BrokerOptions } from './broker.js';
import type { LockTransport } from './transport.js';

export const DEFAULT_TOPIC_PREFIX = 'arrowhead/serviceorchestration';
const LOCK_TOPIC = 'orchestration/management/lock';

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
  /** the broker callers reach Drover through */
  brokerUrl: string;
  /** the embedded broker's MQTTS address, when it has one */
  mqttsUrl?: string;
  /** how requests arrive and answers leave (bench/locks-mqtt.ts times both ends) */
  transport: LockTransport;
  close(): Promise<void>;
}

export async function startMqttInterface(ctx: CoreContext, identities: Identities, log: Logger, options: MqttInterfaceOptions): Promise<MqttInterface> {
  const external = /^(mqtts?|tcp|ssl|tls):\/\//.test(options.broker);
  if (!external && options.broker !== 'embedded') throw new Error(`--mqtt must be embedded, none, mqtt://... or mqtts://..., got ${options.broker}`);
  const operations = new Map(Object.entries(OPERATIONS).map(([name, op]) => [`${options.topicPrefix}/${LOCK_TOPIC}/${name}`, op]));
  // Each transport's module (aedes, or the MQTT client and what it loads) only when it is used.
  const embedded = external ? undefined : new (await import('./broker.js')).EmbeddedBroker(options.embedded, log);
  const transport: LockTransport = embedded ?? new (await import('./client.js')).BrokerClient(options.broker, log);

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
    const caller = identifyCaller(identities, request.authentication, ctx.now());
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
    transport.publish(request.responseTopic, answer, qos, (err) => {
      if (err) log.warn({ err: err.message, responseTopic: request.responseTopic }, 'could not publish an MQTT answer');
    });
  };
  transport.deliver = (topic, message) => void handle(topic, message).catch((err) => log.error({ err, topic }, 'MQTT request handling failed'));
  await transport.serve([...operations.keys()]);

  return {
    brokerUrl: transport.url,
    mqttsUrl: embedded?.mqttsUrl,
    transport,
    close: () => transport.close(),
  };
}
