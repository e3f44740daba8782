// A Service is a named group of DesiredLRPs created and removed together (a MANO service
// instance, a GENI slice). An operator may shut it down: processes stop, state is kept.

export type ServiceState = 'INSTANTIATING' | 'READY' | 'TERMINATING' | 'TERMINATED' | 'ERROR';

export interface Service {
  id: string;
  name: string;
  /** which interface made it: 'mano', 'geni', ... — informational only */
  kind: string;
  owner: string;
  state: ServiceState;
  shutdown: boolean;
  /** free-form data the owning interface keeps with the service (records, expiry, ...) */
  attributes: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

const SERVICE_TRANSITIONS: Record<ServiceState, ServiceState[]> = {
  INSTANTIATING: ['READY', 'ERROR', 'TERMINATING'],
  READY: ['TERMINATING', 'ERROR'],
  ERROR: ['TERMINATING', 'READY'],
  TERMINATING: ['TERMINATED', 'ERROR'],
  TERMINATED: [],
};

export function canMoveService(from: ServiceState, to: ServiceState): boolean {
  return from === to || SERVICE_TRANSITIONS[from].includes(to);
}
