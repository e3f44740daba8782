// Who is calling. Each interface resolves its own credential to one of these.

export type Role = 'operator' | 'owner' | 'agent' | 'reader';
export const ROLES: Role[] = ['operator', 'owner', 'agent', 'reader'];

export interface Principal {
  name: string;
  roles: Role[];
}

/** Open mode (no --auth): every caller is an operator. */
export const OPEN_MODE_PRINCIPAL: Principal = { name: 'anonymous', roles: ['operator'] };

/** Operators may do everything; writers may also read. */
export function hasRole(p: Principal, role: Role): boolean {
  if (p.roles.includes('operator')) return true;
  if (role === 'reader') return p.roles.length > 0;
  return p.roles.includes(role);
}
