// The BBS event stream: Server-Sent Events read from the persisted event sequence, so a
// subscriber on any replica sees every change in order and can resume from `Last-Event-ID`.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CoreContext } from '../../core/context.js';
import { authorize } from '../../core/authorize.js';
import { toGroup } from '../../core/queries.js';
import { DroverError } from '../../model/errors.js';
import type { DroverEvent } from '../../model/event.js';
import type { ActualLrp } from '../../model/lrp.js';
import { encodeEvent, encodeEventJson } from './codec.js';
import { principalOf } from '../http/principal.js';

interface WireEvent {
  name: string;
  type: string;
  message: object;
}

type Payload = Record<string, unknown>;
const actual = (p: Payload, k: string) => p[k] as ActualLrp;

/** The legacy stream speaks in ActualLRPGroups. */
function groupEvent(e: DroverEvent): WireEvent | undefined {
  const p = e.payload;
  switch (e.type) {
    case 'desired_lrp_created':
      return { name: e.type, type: 'models.DesiredLRPCreatedEvent', message: { desiredLrp: p.desiredLrp } };
    case 'desired_lrp_changed':
      return { name: e.type, type: 'models.DesiredLRPChangedEvent', message: { before: p.before, after: p.after } };
    case 'desired_lrp_removed':
      return { name: e.type, type: 'models.DesiredLRPRemovedEvent', message: { desiredLrp: p.desiredLrp } };
    case 'actual_lrp_created':
      return { name: e.type, type: 'models.ActualLRPCreatedEvent', message: { actualLrpGroup: toGroup(actual(p, 'actualLrp')) } };
    case 'actual_lrp_changed':
      return { name: e.type, type: 'models.ActualLRPChangedEvent', message: { before: toGroup(actual(p, 'before')), after: toGroup(actual(p, 'after')) } };
    case 'actual_lrp_removed':
      return { name: e.type, type: 'models.ActualLRPRemovedEvent', message: { actualLrpGroup: toGroup(actual(p, 'actualLrp')) } };
    case 'actual_lrp_crashed':
      return { name: e.type, type: 'models.ActualLRPCrashedEvent', message: p };
    default:
      return undefined;
  }
}

/** The newer stream speaks in single ActualLRP instances. */
function instanceEvent(e: DroverEvent): WireEvent | undefined {
  const p = e.payload;
  switch (e.type) {
    case 'actual_lrp_created':
      return { name: 'actual_lrp_instance_created', type: 'models.ActualLRPInstanceCreatedEvent', message: { actualLrp: p.actualLrp } };
    case 'actual_lrp_changed': {
      // as BBS: the event names the instance (after's instance key, or before's when after has none)
      const [before, after] = [actual(p, 'before'), actual(p, 'after')];
      const instanceKey = after.actualLrpInstanceKey.instanceGuid ? after.actualLrpInstanceKey : before.actualLrpInstanceKey;
      return { name: 'actual_lrp_instance_changed', type: 'models.ActualLRPInstanceChangedEvent', message: { actualLrpKey: after.actualLrpKey, actualLrpInstanceKey: instanceKey, before, after } };
    }
    case 'actual_lrp_removed':
      return { name: 'actual_lrp_instance_removed', type: 'models.ActualLRPInstanceRemovedEvent', message: { actualLrp: p.actualLrp } };
    default:
      return groupEvent(e);
  }
}

const BATCH = 500;
const POLL_MS = 1000;

/** Streams events after `lastId` until the client goes away; other replicas' writes are picked up by polling. */
export async function streamEvents(
  ctx: CoreContext,
  request: FastifyRequest,
  reply: FastifyReply,
  lastId: number,
  write: (e: DroverEvent) => string | undefined,
): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.write(': drover events\n\n');
  let closed = false;
  let wake: () => void = () => {};
  const onCommit = () => wake();
  ctx.bus.on('committed', onCommit);
  request.raw.on('close', () => {
    closed = true;
    wake();
  });
  try {
    while (!closed) {
      const events = await ctx.store.listEvents(lastId, BATCH);
      for (const e of events) {
        const text = write(e);
        if (text) res.write(text);
        lastId = e.id;
      }
      if (events.length === BATCH) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, POLL_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    ctx.bus.off('committed', onCommit);
    res.end();
  }
}

export function startingEventId(request: FastifyRequest): number | undefined {
  const query = request.query as Record<string, string | undefined>;
  const raw = request.headers['last-event-id'] ?? query.last_event_id;
  const id = raw === undefined ? undefined : Number(raw);
  return id !== undefined && Number.isInteger(id) && id >= 0 ? id : undefined;
}

export function registerBbsEvents(app: FastifyInstance, ctx: CoreContext): void {
  const serve = (toWire: (e: DroverEvent) => WireEvent | undefined) => async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      authorize(principalOf(request), 'reader');
    } catch (e) {
      const status = e instanceof DroverError && e.kind === 'unauthenticated' ? 401 : 403;
      return reply.code(status).send({ error: { type: 'UnknownError', message: (e as Error).message } });
    }
    const json = (request.query as Record<string, string>).format === 'json';
    const from = startingEventId(request) ?? (await ctx.store.lastEventId());
    await streamEvents(ctx, request, reply, from, (e) => {
      const w = toWire(e);
      if (!w) return undefined;
      const data = json ? encodeEventJson(w.type, w.message) : encodeEvent(w.type, w.message);
      return `id: ${e.id}\nevent: ${w.name}\ndata: ${data}\n\n`;
    });
  };
  app.get('/v1/events', serve(groupEvent));
  app.get('/v1/events/lrp_instances', serve(instanceEvent));
}
