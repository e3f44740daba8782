// BBS error types and the mapping of Drover's core error kinds onto them. Domain errors
// travel inside the response message's `error` field with HTTP 200, as BBS does.

import { DroverError, type ErrorKind } from '../../model/errors.js';

/** BBS `Error.Type` names and their enum numbers (models/error.proto). */
export const BBS_ERROR_TYPES = {
  UnknownError: 0,
  InvalidRecord: 3,
  InvalidRequest: 4,
  InvalidResponse: 5,
  InvalidProtobufMessage: 6,
  InvalidJSON: 7,
  FailedToOpenEnvelope: 8,
  InvalidStateTransition: 9,
  ResourceConflict: 11,
  ResourceExists: 12,
  ResourceNotFound: 13,
  RouterError: 14,
  ActualLRPCannotBeClaimed: 15,
  ActualLRPCannotBeStarted: 16,
  ActualLRPCannotBeCrashed: 17,
  ActualLRPCannotBeFailed: 18,
  ActualLRPCannotBeRemoved: 19,
  ActualLRPCannotBeUnclaimed: 21,
  RunningOnDifferentCell: 24,
  GUIDGeneration: 26,
  Deserialize: 27,
  Deadlock: 28,
  Unrecoverable: 29,
  LockCollision: 30,
  Timeout: 31,
} as const;

export type BbsErrorType = keyof typeof BBS_ERROR_TYPES;

/** The internal shape of a BBS `Error` message. */
export interface BbsError {
  type: BbsErrorType;
  message: string;
}

/** A request body the codec could not turn into a message; answered as a BBS error. */
export class BbsCodecError extends Error {
  constructor(
    readonly bbsType: BbsErrorType,
    message: string,
  ) {
    super(message);
    this.name = 'BbsCodecError';
  }
}

// A Record over ErrorKind, so adding a kind without a BBS mapping fails to compile.
const BY_KIND: Record<ErrorKind, BbsErrorType> = {
  invalid_request: 'InvalidRequest',
  not_found: 'ResourceNotFound',
  exists: 'ResourceExists',
  conflict: 'ResourceConflict',
  invalid_transition: 'InvalidStateTransition',
  cannot_claim: 'ActualLRPCannotBeClaimed',
  cannot_start: 'ActualLRPCannotBeStarted',
  cannot_crash: 'ActualLRPCannotBeCrashed',
  cannot_fail: 'ActualLRPCannotBeFailed',
  cannot_remove: 'ActualLRPCannotBeRemoved',
  running_on_different_cell: 'RunningOnDifferentCell',
  // Drover additions, expressed with existing BBS types so BBS clients understand them:
  // a lock held by another owner is a conflict (the message names the owner), a shut
  // down service rejects requests.
  locked: 'ResourceConflict',
  shut_down: 'InvalidRequest',
  // BBS has no auth error types; the route layer answers these with HTTP 401/403.
  unauthenticated: 'UnknownError',
  forbidden: 'UnknownError',
  limit_exceeded: 'InvalidRequest',
  // answered with HTTP 429 by the route layer
  rate_limited: 'UnknownError',
  internal: 'UnknownError',
};

export function bbsErrorFromDroverError(e: DroverError): BbsError {
  return { type: BY_KIND[e.kind] ?? 'UnknownError', message: e.message };
}

/** Any thrown value as a BBS error; unexpected errors don't leak their details. */
export function bbsErrorFrom(e: unknown): BbsError {
  if (e instanceof BbsCodecError) return { type: e.bbsType, message: e.message };
  if (e instanceof DroverError) return bbsErrorFromDroverError(e);
  return { type: 'UnknownError', message: 'internal error' };
}
