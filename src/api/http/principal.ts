// HTTP callers identify themselves with `Authorization: Bearer TOKEN`.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Identities } from '../../core/identities.js';
import { OPEN_MODE_PRINCIPAL, type Principal } from '../../model/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** who sent the request; unset when its credential is unknown (read it with principalOf) */
    principal: Principal | null | undefined;
  }
}

/** Gives every request its principal, resolved from its credential before routing. */
export function registerPrincipals(app: FastifyInstance, identities: Identities): void {
  if (identities.open) {
    // open mode knows everyone as the operator: no request needs looking at
    app.decorateRequest('principal', { getter: () => OPEN_MODE_PRINCIPAL });
    return;
  }
  app.decorateRequest('principal', null);
  // a callback hook, not an async one: no promise per request
  app.addHook('onRequest', (request, _reply, done) => {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : undefined;
    request.principal = identities.resolve('tokens', token);
    done();
  });
}

export function principalOf(request: FastifyRequest): Principal | undefined {
  return request.principal ?? undefined;
}
