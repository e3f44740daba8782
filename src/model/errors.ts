// Core error kinds. Adapters map each kind onto their protocol's own error format.

export type ErrorKind =
  | 'invalid_request'
  | 'not_found'
  | 'exists'
  | 'conflict' // stale modification tag or concurrent change
  | 'invalid_transition'
  | 'cannot_claim'
  | 'cannot_start'
  | 'cannot_crash'
  | 'cannot_fail'
  | 'cannot_remove'
  | 'running_on_different_cell'
  | 'locked' // held by another owner
  | 'shut_down' // the service was shut down by an operator
  | 'unauthenticated'
  | 'forbidden'
  | 'limit_exceeded'
  | 'rate_limited' // the caller made too many requests; it may retry later
  | 'internal';

export class DroverError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'DroverError';
  }
}

export function fail(kind: ErrorKind, message: string): never {
  throw new DroverError(kind, message);
}
