// The BBS LRP API: each route decodes its request message, calls one core use case and
// encodes the response message; domain errors travel in the response's `error` field.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CoreContext } from '../../core/context.js';
import { desireLrp, removeDesiredLrp, updateDesiredLrp } from '../../core/desired-lrps.js';
import {
  claimActualLrp,
  claimActualLrps,
  crashActualLrp,
  failActualLrp,
  removeActualLrp,
  retireActualLrp,
  startActualLrp,
  startActualLrps,
} from '../../core/instance-lifecycle.js';
import { actualLrpPages, getActualLrp, getDesiredLrp, listCells, listDesiredLrps, listSchedulingInfos, toGroup } from '../../core/queries.js';
import { heartbeatCell } from '../../core/cells.js';
import type { Principal } from '../../model/principal.js';
import { DroverError } from '../../model/errors.js';
import type { Cell } from '../../model/cell.js';
import { decodeRequest, encodeResponse } from './codec.js';
import { ActualLrpList } from './list-stream.js';
import { BbsCodecError, bbsErrorFromDroverError } from './errors.js';
import { principalOf } from '../http/principal.js';
import { takeRequestToken } from '../../core/limits.js';

// Requests arrive as decoded messages; fields are optional until validated by the core.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Req = any;

interface BbsRoute {
  paths: string[];
  request?: string;
  response: string;
  /**
   * `force`: an operator overrides another owner's lock (header `X-Drover-Force: true`).
   * The answer is the response message, or a list to stream in its place.
   */
  handle(ctx: CoreContext, p: Principal | undefined, req: Req, force: boolean): Promise<object | ActualLrpList>;
}

/** Drover addition: a request may carry the modification tag index the caller last read. */
const tagOf = (req: Req): number | undefined => req.modificationTag?.index;

function cellPresence(c: Cell) {
  return {
    cellId: c.cellId,
    repAddress: c.repAddress,
    zone: c.zone,
    capacity: c.capacity,
    placementTags: c.placementTags,
  };
}

/** A batch item's answer: its error, if it was refused. */
const batchResult = (e: DroverError | undefined) => (e ? { error: bbsErrorFromDroverError(e) } : {});

const withSuffixes = (base: string) => [base, `${base}.r1`, `${base}.r2`];

const ROUTES: BbsRoute[] = [
  { paths: ['/v1/ping'], response: 'models.PingResponse', handle: async () => ({ available: true }) },
  {
    paths: ['/v1/actual_lrp_groups/list'],
    request: 'models.ActualLRPGroupsRequest',
    response: 'models.ActualLRPGroupsResponse',
    handle: async (ctx, p, req) => new ActualLrpList('groups', actualLrpPages(ctx, p, { domain: req.domain, cellId: req.cellId })),
  },
  {
    paths: ['/v1/actual_lrp_groups/list_by_process_guid'],
    request: 'models.ActualLRPGroupsByProcessGuidRequest',
    response: 'models.ActualLRPGroupsResponse',
    handle: async (ctx, p, req) => {
      if (!req.processGuid) throw new DroverError('invalid_request', 'process_guid is required');
      return new ActualLrpList('groups', actualLrpPages(ctx, p, { processGuid: req.processGuid }));
    },
  },
  {
    paths: ['/v1/actual_lrp_groups/get_by_process_guid_and_index'],
    request: 'models.ActualLRPGroupByProcessGuidAndIndexRequest',
    response: 'models.ActualLRPGroupResponse',
    handle: async (ctx, p, req) => ({ actualLrpGroup: toGroup(await getActualLrp(ctx, p, req.processGuid, req.index ?? 0)) }),
  },
  {
    paths: ['/v1/actual_lrps/list'],
    request: 'models.ActualLRPsRequest',
    response: 'models.ActualLRPsResponse',
    handle: async (ctx, p, req) =>
      new ActualLrpList('actuals', actualLrpPages(ctx, p, { domain: req.domain, cellId: req.cellId, includeTargeted: req.includeTargeted, processGuid: req.processGuid, index: req.index })),
  },
  {
    paths: ['/v1/actual_lrps/claim'],
    request: 'models.ClaimActualLRPRequest',
    response: 'models.ActualLRPLifecycleResponse',
    handle: async (ctx, p, req) => {
      await claimActualLrp(ctx, p, { processGuid: req.processGuid, index: req.index }, req.actualLrpInstanceKey, tagOf(req));
      return {};
    },
  },
  {
    paths: ['/v1/actual_lrps/start'],
    request: 'models.StartActualLRPRequest',
    response: 'models.ActualLRPLifecycleResponse',
    handle: async (ctx, p, req) => {
      await startActualLrp(ctx, p, req.actualLrpKey, req.actualLrpInstanceKey, req.actualLrpNetInfo, tagOf(req));
      return {};
    },
  },
  {
    // Drover addition: a cell claims many instances at once and gets their desired LRPs
    paths: ['/v1/actual_lrps/claim_batch'],
    request: 'models.ClaimActualLRPsRequest',
    response: 'models.ClaimActualLRPsResponse',
    handle: async (ctx, p, req) => {
      const claims: Req[] = req.claims ?? [];
      const items = claims.map((c) => ({ key: { processGuid: c.processGuid, index: c.index }, instanceKey: c.actualLrpInstanceKey, expectedTag: tagOf(c) }));
      const { errors, desiredLrps } = await claimActualLrps(ctx, p, items);
      return { results: errors.map(batchResult), desiredLrps };
    },
  },
  {
    // Drover addition: a cell reports many started instances at once
    paths: ['/v1/actual_lrps/start_batch'],
    request: 'models.StartActualLRPsRequest',
    response: 'models.StartActualLRPsResponse',
    handle: async (ctx, p, req) => {
      const starts: Req[] = req.starts ?? [];
      const items = starts.map((s) => ({ key: s.actualLrpKey, instanceKey: s.actualLrpInstanceKey, netInfo: s.actualLrpNetInfo, expectedTag: tagOf(s) }));
      return { results: (await startActualLrps(ctx, p, items)).map(batchResult) };
    },
  },
  {
    paths: ['/v1/actual_lrps/crash'],
    request: 'models.CrashActualLRPRequest',
    response: 'models.CrashActualLRPResponse',
    handle: async (ctx, p, req) => crashActualLrp(ctx, p, req.actualLrpKey, req.actualLrpInstanceKey, req.errorMessage ?? '', tagOf(req), req.restartInstanceKey),
  },
  {
    paths: ['/v1/actual_lrps/fail'],
    request: 'models.FailActualLRPRequest',
    response: 'models.ActualLRPLifecycleResponse',
    handle: async (ctx, p, req) => {
      await failActualLrp(ctx, p, req.actualLrpKey, req.errorMessage ?? '', tagOf(req));
      return {};
    },
  },
  {
    paths: ['/v1/actual_lrps/remove'],
    request: 'models.RemoveActualLRPRequest',
    response: 'models.ActualLRPLifecycleResponse',
    handle: async (ctx, p, req) => {
      await removeActualLrp(ctx, p, { processGuid: req.processGuid, index: req.index }, req.actualLrpInstanceKey, tagOf(req));
      return {};
    },
  },
  {
    paths: ['/v1/actual_lrps/retire'],
    request: 'models.RetireActualLRPRequest',
    response: 'models.ActualLRPLifecycleResponse',
    handle: async (ctx, p, req, force) => {
      await retireActualLrp(ctx, p, req.actualLrpKey, tagOf(req), force);
      return {};
    },
  },
  {
    paths: withSuffixes('/v1/desired_lrps/list'),
    request: 'models.DesiredLRPsRequest',
    response: 'models.DesiredLRPsResponse',
    handle: async (ctx, p, req) => ({ desiredLrps: await listDesiredLrps(ctx, p, { domain: req.domain, processGuids: req.processGuids }) }),
  },
  {
    paths: withSuffixes('/v1/desired_lrps/get_by_process_guid'),
    request: 'models.DesiredLRPByProcessGuidRequest',
    response: 'models.DesiredLRPResponse',
    handle: async (ctx, p, req) => ({ desiredLrp: await getDesiredLrp(ctx, p, req.processGuid) }),
  },
  {
    paths: ['/v1/desired_lrp_scheduling_infos/list'],
    request: 'models.DesiredLRPsRequest',
    response: 'models.DesiredLRPSchedulingInfosResponse',
    handle: async (ctx, p, req) => ({ desiredLrpSchedulingInfos: await listSchedulingInfos(ctx, p, { domain: req.domain, processGuids: req.processGuids }) }),
  },
  {
    paths: withSuffixes('/v1/desired_lrp/desire'),
    request: 'models.DesireLRPRequest',
    response: 'models.DesiredLRPLifecycleResponse',
    handle: async (ctx, p, req) => {
      await desireLrp(ctx, p, req.desiredLrp);
      return {};
    },
  },
  {
    paths: ['/v1/desired_lrp/update'],
    request: 'models.UpdateDesiredLRPRequest',
    response: 'models.DesiredLRPLifecycleResponse',
    handle: async (ctx, p, req, force) => {
      await updateDesiredLrp(ctx, p, req.processGuid, req.update, tagOf(req), force);
      return {};
    },
  },
  {
    paths: ['/v1/desired_lrp/remove'],
    request: 'models.RemoveDesiredLRPRequest',
    response: 'models.DesiredLRPLifecycleResponse',
    handle: async (ctx, p, req, force) => {
      await removeDesiredLrp(ctx, p, req.processGuid, force);
      return {};
    },
  },
  {
    paths: ['/v1/cells/list'],
    response: 'models.CellsResponse',
    handle: async (ctx, p) => ({ cells: (await listCells(ctx, p)).map(cellPresence) }),
  },
  {
    // Drover addition: cells keep their presence here (BBS keeps it in locket).
    paths: ['/v1/cells/heartbeat'],
    request: 'models.CellHeartbeatRequest',
    response: 'models.CellHeartbeatResponse',
    handle: async (ctx, p, req) => ({ cell: await heartbeatCell(ctx, p, req.cell ?? {}) }),
  },
];

/** HTTP status for errors the BBS answers outside the response message. */
function httpStatus(e: DroverError): number {
  if (e.kind === 'unauthenticated') return 401;
  if (e.kind === 'forbidden') return 403;
  if (e.kind === 'rate_limited') return 429;
  return 200;
}

export function registerBbsRoutes(app: FastifyInstance, ctx: CoreContext): void {
  for (const route of ROUTES) {
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      const contentType = request.headers['content-type'];
      let status = 200;
      let message: object;
      try {
        takeRequestToken(ctx, principalOf(request));
        const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
        const req = route.request ? decodeRequest(route.request, body, contentType) : {};
        const answer = await route.handle(ctx, principalOf(request), req, request.headers['x-drover-force'] === 'true');
        if (answer instanceof ActualLrpList) {
          const streamed = await answer.open(contentType);
          return reply.code(200).type(streamed.contentType).send(streamed.body);
        }
        message = answer;
      } catch (e) {
        if (e instanceof BbsCodecError) {
          message = { error: { type: e.bbsType, message: e.message } };
        } else if (e instanceof DroverError) {
          status = httpStatus(e);
          message = { error: bbsErrorFromDroverError(e) };
        } else {
          request.log.error({ err: e }, 'BBS request failed');
          message = { error: { type: 'UnknownError', message: 'internal error' } };
        }
      }
      const encoded = encodeResponse(route.response, message, contentType);
      return reply.code(status).type(encoded.contentType).send(encoded.body);
    };
    for (const path of route.paths) app.post(path, handler);
  }
}
