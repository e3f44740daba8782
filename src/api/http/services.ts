// Operator routes on services (a MANO service instance, a GENI slice): lift a shutdown, or
// delete. The body names the service by `id`, or by `kind` and `name` (e.g. `geni` and a
// slice URN: the one that is not terminated). Answers `{service}` or `{error: {type, message}}`.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CoreContext } from '../../core/context.js';
import { authorize } from '../../core/authorize.js';
import { deleteService, findServices, restoreService, serviceStatus } from '../../core/services.js';
import { DroverError, fail, type ErrorKind } from '../../model/errors.js';
import type { Principal } from '../../model/principal.js';
import type { Service } from '../../model/service.js';
import { principalOf } from './principal.js';

const STATUS: Partial<Record<ErrorKind, number>> = { unauthenticated: 401, forbidden: 403, not_found: 404, invalid_request: 400, invalid_transition: 409, locked: 409, shut_down: 409, conflict: 409 };

async function serviceNamed(ctx: CoreContext, p: Principal, body: Record<string, unknown>): Promise<Service> {
  if (typeof body.id === 'string' && body.id) return (await serviceStatus(ctx, p, body.id)).service;
  if (typeof body.kind !== 'string' || typeof body.name !== 'string') fail('invalid_request', 'name the service by id, or by kind and name');
  const open = (await findServices(ctx, p, body.kind, body.name)).filter((s) => s.state !== 'TERMINATING' && s.state !== 'TERMINATED');
  if (!open.length) fail('not_found', `no ${body.kind} service ${body.name}`);
  return open.at(-1)!;
}

export function registerServiceRoutes(app: FastifyInstance, ctx: CoreContext): void {
  const route = (path: string, run: (p: Principal, id: string) => Promise<Service>) =>
    app.post(path, async (request: FastifyRequest, reply) => {
      try {
        const p = authorize(principalOf(request), 'operator');
        const raw = (request.body as Buffer | undefined)?.toString('utf8') || '{}';
        let body: unknown;
        try {
          body = JSON.parse(raw);
        } catch {
          fail('invalid_request', 'the body must be JSON');
        }
        const service = await run(p, (await serviceNamed(ctx, p, (body ?? {}) as Record<string, unknown>)).id);
        return reply.type('application/json').send({ service: { id: service.id, kind: service.kind, name: service.name, state: service.state, shutdown: service.shutdown } });
      } catch (e) {
        const known = e instanceof DroverError;
        if (!known) request.log.error({ err: e }, 'service route failed');
        const error = { type: known ? e.kind : 'internal', message: known ? e.message : 'internal error' };
        return reply.code((known && STATUS[e.kind]) || 500).type('application/json').send({ error });
      }
    });
  route('/v1/services/restore', (p, id) => restoreService(ctx, p, id));
  route('/v1/services/delete', (p, id) => deleteService(ctx, p, id));
}
