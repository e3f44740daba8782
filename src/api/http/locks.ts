// The Arrowhead lock management interface over HTTP (generic_http): the same three
// operations and ErrorResponse as over MQTT. The caller's Arrowhead authentication info
// travels as `Authorization: Bearer <PREFIX>//<value>` (a plain bearer token works too).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DroverError } from '../../model/errors.js';
import type { CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { createLocks, queryLocks, removeLocks } from '../../core/locks.js';
import { lockListDto } from '../../model/lock.js';
import type { Principal } from '../../model/principal.js';
import { takeRequestToken } from '../../core/limits.js';
import { authenticated, errorResponse, identifyCaller, parseJson } from '../mqtt/arrowhead.js';

export const LOCK_HTTP_BASE = '/serviceorchestration/orchestration/mgmt/lock';

const bodyOf = (r: FastifyRequest) => {
  const body = r.body as Buffer | undefined;
  return body?.length ? parseJson(body.toString('utf8')) : undefined;
};

export function registerLockRoutes(app: FastifyInstance, ctx: CoreContext, identities: Identities): void {
  const route = (method: 'POST' | 'DELETE', path: string, status: number, run: (p: Principal, r: FastifyRequest) => Promise<object | undefined>) => {
    const url = LOCK_HTTP_BASE + path;
    const origin = `${method} ${url.replace(/:(\w+)/g, '{$1}')}`;
    const sendError = (e: unknown, request: FastifyRequest, reply: FastifyReply) => {
      const error = errorResponse(e, origin, request.log);
      return reply.code(error.errorCode).type('application/json').send(JSON.stringify(error));
    };
    app.route({
      method,
      url,
      // Fastify's own refusals (a body over the limit) answer with an ErrorResponse too
      errorHandler: (error, request, reply) => sendError(error.statusCode === 413 ? new DroverError('limit_exceeded', error.message) : error, request, reply),
      handler: async (request, reply) => {
        const header = request.headers.authorization;
        const credential = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
        try {
          const p = authenticated(identifyCaller(identities, credential, ctx.now()));
          takeRequestToken(ctx, p);
          const body = await run(p, request);
          return reply.code(status).type('application/json').send(body === undefined ? '' : JSON.stringify(body));
        } catch (e) {
          return sendError(e, request, reply);
        }
      },
    });
  };
  route('POST', '/create', 201, async (p, r) => lockListDto(await createLocks(ctx, p, bodyOf(r))));
  route('POST', '/query', 200, async (p, r) => lockListDto(await queryLocks(ctx, p, bodyOf(r))));
  route('DELETE', '/remove/:owner', 200, async (p, r) => {
    const { owner } = r.params as { owner: string };
    const { instanceIds } = r.query as { instanceIds?: string | string[] };
    await removeLocks(ctx, p, owner, typeof instanceIds === 'string' ? [instanceIds] : instanceIds);
    return undefined;
  });
}
