// The MANO service lifecycle interface on RabbitMQ, as the 5GTANGO SLM speaks it: YAML
// requests on `service.instances.create` / `service.instance.terminate`, two replies each
// on the request's reply_to topic with its correlation_id. Decode → authorize (app_id) →
// core use case → encode; nothing here decides anything about services.
//
// Delivery: a request is acked only after its first reply is confirmed by the broker, so a
// connection lost in between redelivers it. Requests are keyed by (topic, app_id,
// correlation_id): a repeat seen by this process is dropped; after a restart the key is
// found again in the store (the service id derives from it; a termination notes it), and
// the workflow resumes instead of running twice.

import { connect, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type RecoveringChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { DroverError, fail } from '../../model/errors.js';
import type { Principal } from '../../model/principal.js';
import type { Service } from '../../model/service.js';
import { EventBus, type CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { failService, instantiateService, serviceProblems, serviceStatus, terminateService, waitForService } from '../../core/services.js';
import { decodeBody, encodeBody } from './body.js';
import { takeRequestToken } from '../../core/limits.js';
import { instanceIdOf, MANO_KIND, planService, records, stableUuid, TOPIC_CREATE, TOPIC_TERMINATE, UNSUPPORTED_TOPICS, type ManoAttributes, type RecordStatus } from './mano.js';

export interface AmqpAdapterOptions {
  url: string;
  exchange: string;
  /** Drover's app_id on the bus: its replies carry it, and messages carrying it are its own */
  appId: string;
  /** how long an instantiation may take to have every instance RUNNING (and a termination to stop them) */
  readyTimeoutMs: number;
  /** the largest request body decoded, in bytes */
  messageLimit: number;
}

export { DEFAULT_APP_ID, DEFAULT_EXCHANGE, DEFAULT_READY_TIMEOUT_MS } from './defaults.js';

const PREFETCH = 32;
/** an unused queue (Drover gone for good) is dropped by the broker after this long */
const QUEUE_EXPIRES_MS = 60 * 60 * 1000;
const REMEMBERED_REQUESTS = 10_000;
const PUBLISH_RETRY_MS = 500;

type Dict = Record<string, unknown>;
type Reply = Dict & { status: string; error: string | null };
/** The first reply, and the rest of the workflow that yields the second (undefined: stopped). */
interface Accepted {
  first: Reply;
  second?: () => Promise<Reply | undefined>;
}
/** `ctx` is the adapter's context with commits held back until the first reply is confirmed (see holdCommits). */
type Workflow = (ctx: CoreContext, p: Principal | undefined, body: Dict, key: string) => Promise<Accepted>;

function reply(status: string, error: string | null, fields: Dict = {}): Reply {
  return { status, error, timestamp: Date.now() / 1000, ...fields };
}

const idFields = (id: string) => ({ instance_id: id, service_instance_uuid: id });

class HeldBus extends EventBus {
  last = 0;
  override committed(lastId: number): void {
    this.last = Math.max(this.last, lastId);
  }
}

/**
 * The adapter's context with commit announcements held until `release()`, which receive()
 * calls once the broker has confirmed the first reply. What a commit sets off in this process
 * (the service watcher, convergence, the cell agent through the event stream) then starts
 * after that reply instead of ahead of it: amqplib writes on a later turn of the event loop,
 * so work started at the commit would run first. The events themselves are in the store
 * already; the bus only wakes their readers.
 */
function holdCommits(ctx: CoreContext): { ctx: CoreContext; release(): void } {
  const held = new HeldBus();
  return {
    ctx: { ...ctx, bus: held },
    release() {
      if (held.last) ctx.bus.committed(held.last);
      held.last = 0;
    },
  };
}

export class ManoAmqpAdapter {
  private conn?: RecoveringChannelModel;
  private channel?: ConfirmChannel;
  /** keys of the requests this process answers or has answered (oldest forgotten first) */
  private readonly seen = new Set<string>();
  private readonly stopping = new AbortController();
  private readonly workflows: Record<string, Workflow> = {
    [TOPIC_CREATE]: (ctx, p, body, key) => this.create(ctx, p, body, key),
    [TOPIC_TERMINATE]: (ctx, p, body, key) => this.terminate(ctx, p, body, key),
  };

  constructor(
    private readonly ctx: CoreContext,
    private readonly identities: Identities,
    private readonly log: Logger,
    private readonly opts: AmqpAdapterOptions,
  ) {
    // Every request waiting for its service listens for the stop: many in flight is normal.
    setMaxListeners(0, this.stopping.signal);
  }

  /** Starts connecting (retrying with back-off, also while the broker is down at start); see ready(). */
  async start(): Promise<void> {
    const conn = await connect(this.opts.url, { recovery: { setup: (m: ChannelModel) => this.setup(m), waitForConnect: false, initialDelay: 200, maxDelay: 10_000 } });
    conn.on('connect', () => this.log.info({ exchange: this.opts.exchange }, 'connected to the AMQP broker'));
    conn.on('disconnect', (err: Error) => this.log.warn({ err: err.message }, 'lost the AMQP broker; reconnecting'));
    conn.on('reconnect-scheduled', ({ attempt, delay, error }: { attempt: number; delay: number; error: Error }) =>
      this.log.warn({ attempt, delay, err: error.message }, 'AMQP connection attempt failed; retrying'),
    );
    conn.on('error', (err: Error) => this.log.warn({ err: err.message }, 'AMQP connection error'));
    this.conn = conn;
  }

  /** Resolves once the adapter has been connected and consuming at least once. */
  async ready(): Promise<void> {
    await this.conn?.waitForConnect();
  }

  async close(): Promise<void> {
    this.stopping.abort();
    await this.conn?.close();
  }

  /** The queue of one topic: shared by Drover replicas on the same exchange, kept across reconnections. */
  queueName(topic: string): string {
    return `q.${topic}.drover.${this.opts.exchange}`;
  }

  /** Runs on every (re)connection: the exchange and queues may be gone after a broker restart. */
  private async setup(model: ChannelModel): Promise<void> {
    const ch = await model.createConfirmChannel();
    await ch.prefetch(PREFETCH);
    // the framework's flags: any other flags and the broker refuses with PRECONDITION_FAILED
    await ch.assertExchange(this.opts.exchange, 'topic', { durable: false, autoDelete: false });
    for (const topic of [TOPIC_CREATE, TOPIC_TERMINATE, ...UNSUPPORTED_TOPICS]) {
      const queue = this.queueName(topic);
      await ch.assertQueue(queue, { durable: false, exclusive: false, autoDelete: false, arguments: { 'x-expires': QUEUE_EXPIRES_MS } });
      await ch.bindQueue(queue, this.opts.exchange, topic);
      await ch.consume(queue, (msg) => (msg ? void this.receive(ch, msg) : this.restart(model, 'consumer cancelled by the broker')));
    }
    // A channel can die alone (a channel-level error); recovery only watches the connection.
    ch.on('close', () => {
      if (this.channel === ch) this.channel = undefined;
      this.restart(model, 'channel closed');
    });
    ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'AMQP channel error'));
    this.channel = ch;
  }

  private restart(model: ChannelModel, why: string): void {
    if (this.stopping.signal.aborted) return;
    this.log.warn({ why }, 'restarting the AMQP connection');
    model.close().catch(() => {});
  }

  private async receive(ch: ConfirmChannel, msg: ConsumeMessage): Promise<void> {
    const { appId, correlationId, replyTo } = msg.properties as { appId?: string; correlationId?: string; replyTo?: string };
    const topic = msg.fields.routingKey;
    const key = `${topic}|${appId ?? ''}|${correlationId}`;
    let requeue = false;
    const commits = holdCommits(this.ctx);
    try {
      // requests and replies share the topic: these are Drover's own replies
      if (appId === this.opts.appId) return;
      if (!correlationId || !replyTo) {
        this.log.warn({ topic, appId }, 'AMQP request without correlation_id or reply_to cannot be answered: dropped');
        return;
      }
      if (this.seen.has(key)) {
        this.log.info({ topic, appId, correlationId }, 'repeated AMQP request: this process answers it already');
        return;
      }
      this.remember(key);
      const { first, second } = await this.accept(commits.ctx, topic, appId, msg.content, key);
      // until the broker confirms the reply, the request stays the broker's to deliver again
      requeue = true;
      await this.publishOn(ch, replyTo, correlationId, first);
      requeue = false;
      this.log.info({ topic, appId, correlationId, status: first.status, error: first.error }, 'AMQP request answered');
      if (second) void this.finish(replyTo, correlationId, second);
    } catch (e) {
      this.seen.delete(key);
      this.log.warn({ topic, correlationId, err: (e as Error).message }, 'AMQP reply not published; the request will come again');
    } finally {
      commits.release();
      try {
        if (requeue) ch.nack(msg, false, true);
        else ch.ack(msg);
      } catch {
        // the channel is gone: the broker delivers the request again anyway
      }
    }
  }

  private remember(key: string): void {
    this.seen.add(key);
    if (this.seen.size > REMEMBERED_REQUESTS) this.seen.delete(this.seen.values().next().value!);
  }

  /** Decodes and runs the request; any refusal becomes an ERROR first reply. Never throws. */
  private async accept(ctx: CoreContext, topic: string, appId: string | undefined, content: Buffer, key: string): Promise<Accepted> {
    let body: Dict | undefined;
    try {
      body = decodeBody(content, this.opts.messageLimit);
      const workflow = this.workflows[topic];
      if (!workflow) fail('invalid_request', `${topic} is not supported by Drover`);
      const p = this.identities.resolve('amqpAppIds', appId);
      takeRequestToken(ctx, p);
      return await workflow(ctx, p, body, key);
    } catch (e) {
      return { first: this.errorReply(e, body) };
    }
  }

  private errorReply(e: unknown, body?: Dict): Reply {
    if (!(e instanceof DroverError)) this.log.error({ err: e }, 'AMQP request failed');
    const message = e instanceof DroverError ? e.message : 'internal error';
    // echo the instance id the request named, so a client can tell which refusal is which
    const echo = Object.fromEntries(['instance_id', 'service_instance_uuid'].filter((k) => typeof body?.[k] === 'string').map((k) => [k, body![k]]));
    return reply('ERROR', message, echo);
  }

  /** service.instances.create: the Service and its DesiredLRPs now, READY once every instance runs. */
  private async create(ctx: CoreContext, p: Principal | undefined, body: Dict, key: string): Promise<Accepted> {
    const spec = planService(body, stableUuid(key), key);
    const service = await instantiateService(ctx, p, spec).catch(async (e: unknown) => {
      // the same request again (redelivered after a restart) finds the service it created
      if (!(e instanceof DroverError && e.kind === 'exists')) throw e;
      const { service: s } = await serviceStatus(ctx, p, spec.id!);
      if (s.state !== 'INSTANTIATING' && s.state !== 'READY') fail('conflict', `request already handled: service ${s.id} is ${s.state}`);
      return s;
    });
    const ids = { service_instance_uuid: service.id };
    return { first: reply('INSTANTIATING', null, ids), second: () => this.settle(p, service.id, 'INSTANTIATING', 'READY', 'normal operation', ids) };
  }

  /**
   * service.instance.terminate: stop every process now, READY once none is left. The checks
   * (a MANO service; this request terminated it before: a redelivery) are made in the
   * terminate's own transaction, so the first reply waits for that one transaction only.
   */
  private async terminate(ctx: CoreContext, p: Principal | undefined, body: Dict, key: string): Promise<Accepted> {
    const id = instanceIdOf(body);
    const terminatedBy = (s: Service) => (s.attributes as ManoAttributes).terminateRequest === key;
    await terminateService(ctx, p, id, { terminateRequest: key }, { kind: MANO_KIND, terminatedBy });
    const fields = { ...idFields(id), workflow: 'termination' };
    return { first: reply('TERMINATING', null, idFields(id)), second: () => this.settle(p, id, 'TERMINATING', 'TERMINATED', 'terminated', fields) };
  }

  /** Waits for the service to leave `from`; READY with records when it reached `to`, ERROR otherwise. */
  private async settle(p: Principal | undefined, id: string, from: Service['state'], to: Service['state'], recordStatus: RecordStatus, fields: Dict): Promise<Reply | undefined> {
    const s = await waitForService(this.ctx, id, (x) => x.state !== from, this.opts.readyTimeoutMs, this.stopping.signal);
    if (this.stopping.signal.aborted) return undefined;
    const status = await serviceStatus(this.ctx, p, id);
    if (s?.state === to) return reply('READY', null, { ...fields, ...records(status, recordStatus) });
    if (!s && from === 'INSTANTIATING') await failService(this.ctx, id);
    const why = s ? serviceProblems(status).join('; ') || `service ${id} is ${s.state}` : `service ${id} is still ${from} after ${this.opts.readyTimeoutMs} ms`;
    return reply('ERROR', why, fields);
  }

  private async finish(topic: string, correlationId: string, second: () => Promise<Reply | undefined>): Promise<void> {
    const last = await second().catch((e) => this.errorReply(e));
    if (!last) return;
    // the first reply was confirmed and the request acked: retry on whatever channel comes next
    while (!this.stopping.signal.aborted) {
      try {
        if (!this.channel) throw new Error('not connected');
        await this.publishOn(this.channel, topic, correlationId, last);
        this.log.info({ topic, correlationId, status: last.status, error: last.error }, 'AMQP workflow finished');
        return;
      } catch (e) {
        this.log.debug({ topic, correlationId, err: (e as Error).message }, 'final AMQP reply not published yet');
        await sleep(PUBLISH_RETRY_MS);
      }
    }
  }

  /** Publishes and waits for the broker's confirm. */
  private publishOn(ch: ConfirmChannel, topic: string, correlationId: string, body: Reply): Promise<void> {
    return new Promise((resolve, reject) => {
      ch.publish(this.opts.exchange, topic, encodeBody(body), { appId: this.opts.appId, correlationId, contentType: 'application/yaml' }, (err) =>
        err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
      );
    });
  }
}

