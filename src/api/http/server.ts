// One Fastify server carries the BBS API and Drover's own HTTP endpoints.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { registerBbsRoutes } from '../bbs/routes.js';
import { registerBbsEvents } from '../bbs/events.js';
import { encodeResponse, JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE } from '../bbs/codec.js';
import { registerPrincipals } from './principal.js';
import { registerLockRoutes } from './locks.js';
import { registerServiceRoutes } from './services.js';
import { registerDashboard, type DashboardOptions } from './dashboard.js';
import { registerMetrics, type MetricsOptions } from './metrics.js';
import { registerEraRoutes } from '../era/routes.js';

export interface HttpOptions extends DashboardOptions, MetricsOptions {
  bodyLimit: number;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export async function buildHttpServer(ctx: CoreContext, identities: Identities, log: Logger, options: HttpOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: options.bodyLimit,
    // SSE streams stay open; shutting down must not wait for their clients.
    forceCloseConnections: true,
    logController: new LogController({ disableRequestLogging: true }),
  });
  // Bodies stay raw: each API decodes its own encoding (protobuf or JSON). The two usual
  // types are named besides the catch-all because Fastify caches only named parsers' lookups.
  app.removeAllContentTypeParsers();
  for (const type of [JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, '*']) {
    app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  }
  registerPrincipals(app, identities);
  // Transport-level refusals (body too large, bad framing) still answer in the BBS Error shape.
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    const encoded = encodeResponse('models.DesiredLRPLifecycleResponse', { error: { type: 'InvalidRequest', message: error.message } }, request.headers['content-type']);
    return reply.code(status).type(encoded.contentType).send(encoded.body);
  });
  registerBbsRoutes(app, ctx);
  registerBbsEvents(app, ctx);
  registerLockRoutes(app, ctx, identities);
  registerServiceRoutes(app, ctx);
  registerEraRoutes(app, ctx);
  registerMetrics(app, ctx, options);
  registerDashboard(app, ctx, options);
  return app;
}
