// The web dashboard: the built UI (dist/ui, from ui/) at `/`, and the JSON it reads under
// /ui/api. The page follows /v1/events and re-reads /ui/api/state after each change. Its
// writes use the BBS routes (scale, retire) and the lock routes (release); enable/disable,
// which no other interface offers yet, has a route here.

import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CoreContext } from '../../core/context.js';
import { authorize } from '../../core/authorize.js';
import { setDesiredLrpEnabled } from '../../core/operator-actions.js';
import { readLogTail } from '../../agent/executor.js';
import { instanceLogFile } from '../../cli/logs.js'; // where the log layout is defined
import { cellAlive } from '../../model/cell.js';
import { DroverError, fail, type ErrorKind } from '../../model/errors.js';
import { validateProcessGuid } from '../../model/validate.js';
import type { Principal, Role } from '../../model/principal.js';
import { packagePath } from '../../package-root.js';
import { principalOf } from './principal.js';

export interface DashboardOptions {
  /** where the in-process agent keeps its cells' logs; without it there is no log tail */
  dataDir?: string;
}

const UI_DIR = packagePath('dist', 'ui');
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};
const LOG_BYTES = 16 * 1024;
const LOG_BYTES_MAX = 1024 * 1024;

const STATUS: Partial<Record<ErrorKind, number>> = {
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  invalid_request: 400,
  conflict: 409,
  invalid_transition: 409,
  shut_down: 409,
  locked: 409,
};

/** Core errors as `{error: {kind, message}}` with a fitting HTTP status; anything else is a 500. */
export function sendError(reply: FastifyReply, e: unknown): FastifyReply {
  if (!(e instanceof DroverError)) {
    reply.log.error({ err: e }, 'dashboard request failed');
    return reply.code(500).send({ error: { kind: 'internal', message: 'internal error' } });
  }
  return reply.code(STATUS[e.kind] ?? 400).send({ error: { kind: e.kind, message: e.message } });
}

type Handler = (p: Principal, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** Checks the role first; core errors become JSON errors. */
const guarded = (role: Role, handle: Handler) => async (request: FastifyRequest, reply: FastifyReply) => {
  try {
    return await handle(authorize(principalOf(request), role), request, reply);
  } catch (e) {
    return sendError(reply, e);
  }
};

async function sendUiFile(reply: FastifyReply, name: string) {
  // Only plain file names: nothing outside UI_DIR can be named.
  const type = /^[\w.-]+$/.test(name) ? CONTENT_TYPES[extname(name)] : undefined;
  if (!type) return reply.code(404).send({ error: { kind: 'not_found', message: name } });
  try {
    return reply.type(type).header('cache-control', 'no-cache').send(await readFile(join(UI_DIR, name)));
  } catch {
    const hint = name === 'index.html' ? ' (the dashboard is not built: run `npm run build`)' : '';
    return reply.code(404).type('text/plain').send(`${name} not found${hint}`);
  }
}

/** Everything the page shows, in one read. */
async function dashboardState(ctx: CoreContext, p: Principal) {
  const now = ctx.now();
  const [services, desired, actual, cells, locks] = await Promise.all([
    ctx.store.listServices(),
    ctx.store.listDesiredLrps(),
    ctx.store.listActualLrps(),
    ctx.store.listCells(),
    ctx.store.queryLocks({}, undefined, now),
  ]);
  const countsOf = (guid: string) => {
    const counts: Record<string, number> = {};
    for (const a of actual) if (a.actualLrpKey.processGuid === guid) counts[a.state] = (counts[a.state] ?? 0) + 1;
    return counts;
  };
  return {
    now,
    principal: { name: p.name, roles: p.roles },
    services,
    desiredLrps: desired.map((d) => ({
      processGuid: d.processGuid,
      domain: d.domain,
      serviceId: d.serviceId,
      instances: d.instances,
      strategy: d.placement?.strategy ?? 'spread',
      enabled: d.enabled !== false,
      disabledReason: d.disabledReason,
      counts: countsOf(d.processGuid),
    })),
    actualLrps: actual.map((a) => ({
      processGuid: a.actualLrpKey.processGuid,
      index: a.actualLrpKey.index,
      domain: a.actualLrpKey.domain,
      state: a.state,
      presence: a.presence,
      cellId: a.actualLrpInstanceKey.cellId || a.targetCellId,
      since: a.since,
      crashCount: a.crashCount,
      crashReason: a.crashReason,
      placementError: a.placementError,
      stopRequested: a.stopRequested,
    })),
    cells: cells.map((c) => ({ cellId: c.cellId, site: c.site, zone: c.zone, sections: c.sections, heartbeatAt: c.heartbeatAt, ttlMs: c.ttlMs, alive: cellAlive(c, now) })),
    locks: locks.entries,
    shutDownServices: services.filter((s) => s.shutdown).map((s) => ({ id: s.id, name: s.name, kind: s.kind })),
    disabledLrps: desired.filter((d) => d.enabled === false).map((d) => ({ processGuid: d.processGuid, reason: d.disabledReason })),
  };
}

function jsonBody(request: FastifyRequest): Record<string, unknown> {
  const body = request.body as Buffer | undefined;
  try {
    const parsed = body?.length ? JSON.parse(body.toString('utf8')) : {};
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed;
  } catch {
    // answered below
  }
  fail('invalid_request', 'expected a JSON object body');
}

export function registerDashboard(app: FastifyInstance, ctx: CoreContext, options: DashboardOptions): void {
  // The page and its assets are public; the data they read is not.
  app.get('/', (_request, reply) => sendUiFile(reply, 'index.html'));
  app.get('/ui/:file', (request, reply) => sendUiFile(reply, (request.params as { file: string }).file));

  app.get('/ui/api/state', guarded('reader', (p) => dashboardState(ctx, p)));

  app.get(
    '/ui/api/logs/:guid/:index',
    guarded('reader', async (_p, request, reply) => {
      const params = request.params as { guid: string; index: string };
      const guid = validateProcessGuid(params.guid);
      const index = Number(params.index);
      const bytes = Math.min(Number((request.query as { bytes?: string }).bytes) || LOG_BYTES, LOG_BYTES_MAX);
      if (!Number.isInteger(index) || index < 0) fail('invalid_request', 'index must be a non-negative integer');
      const a = await ctx.store.getActualLrp(guid, index);
      const cellId = a?.actualLrpInstanceKey.cellId || a?.targetCellId;
      if (!cellId) fail('not_found', `${guid}/${index} has no cell`);
      if (!options.dataDir) fail('not_found', 'no cell logs on this server');
      // Only cells of this machine's data dir have their logs here; a remote cell's read is empty.
      return reply.type('text/plain; charset=utf-8').send(await readLogTail(instanceLogFile(options.dataDir, cellId, guid, index), bytes));
    }),
  );

  app.post(
    '/ui/api/desired_lrps/:guid/enabled',
    // the use case checks its own role
    guarded('reader', async (p, request) => {
      const body = jsonBody(request);
      if (typeof body.enabled !== 'boolean') fail('invalid_request', 'enabled must be true or false');
      const d = await setDesiredLrpEnabled(ctx, p, (request.params as { guid: string }).guid, body.enabled, typeof body.reason === 'string' ? body.reason : '');
      return { processGuid: d.processGuid, enabled: d.enabled, disabledReason: d.disabledReason };
    }),
  );
}
