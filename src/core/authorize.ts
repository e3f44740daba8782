// Role checks shared by every interface; each adapter maps the refusal to its own format.

import { fail } from '../model/errors.js';
import { hasRole, type Principal, type Role } from '../model/principal.js';

export function authorize(p: Principal | undefined, role: Role): Principal {
  if (!p) fail('unauthenticated', 'caller is not identified');
  if (!hasRole(p, role)) fail('forbidden', `${p.name} lacks the ${role} role`);
  return p;
}
