// HTTP callers identify themselves with `Authorization: Bearer TOKEN`.

import type { FastifyRequest } from 'fastify';
import type { Identities } from '../../core/identities.js';
import type { Principal } from '../../model/principal.js';

const principals = new WeakMap<FastifyRequest, Principal | undefined>();

export function resolveHttpPrincipal(request: FastifyRequest, identities: Identities): void {
  const header = request.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : undefined;
  principals.set(request, identities.resolve('tokens', token));
}

export function principalOf(request: FastifyRequest): Principal | undefined {
  return principals.get(request);
}
