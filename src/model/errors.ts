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
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string) {
    // An error the caller caused is answered, never debugged: no stack trace is captured
    // (walking the awaits cost a BBS get of an unknown LRP more than its decode and encode).
    // Internal errors keep theirs.
    const stackTraceLimit = Error.stackTraceLimit;
    if (kind !== 'internal') Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = stackTraceLimit;
    this.kind = kind;
    this.name = 'DroverError';
  }
}

export function fail(kind: ErrorKind, message: string): never {
  throw new DroverError(kind, message);
}
