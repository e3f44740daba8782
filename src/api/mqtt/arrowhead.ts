// What the Arrowhead lock interfaces share over MQTT and HTTP: who the caller is (from its
// Arrowhead authentication info) and the ErrorResponse every failure is answered with.

import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { DroverError, fail, type ErrorKind } from '../../model/errors.js';
import type { Principal } from '../../model/principal.js';
import type { Identities } from '../../core/identities.js';

export interface ErrorResponse {
  errorMessage: string;
  errorCode: number;
  exceptionType: string;
  /** the MQTT topic, or `<METHOD> <path>` over HTTP */
  origin: string;
}

export interface Caller {
  principal?: Principal;
  /** the caller's system name, echoed as the response's `receiver` */
  receiver: string;
  /** why the caller is not identified (the 401 message) */
  problem: string;
}

const SYSTEM = 'SYSTEM//';
const IDENTITY_TOKEN = 'IDENTITY-TOKEN//';

/** base64 long enough to hold a PEM certificate (a short token never decodes to one) */
const BASE64 = /^[A-Za-z0-9+/\r\n]{200,}={0,2}$/;

/**
 * The client certificate of Arrowhead's certificate policy, which sends the certificate
 * itself as the authentication info: a PEM text, base64-encoded. Undefined when `auth` is not
 * one (a token, say); 'invalid' when it is one but does not parse.
 */
function certificateIn(auth: string): X509Certificate | 'invalid' | undefined {
  if (!BASE64.test(auth)) return undefined;
  const pem = Buffer.from(auth, 'base64').toString('latin1');
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) return undefined;
  try {
    return new X509Certificate(pem);
  } catch {
    return 'invalid';
  }
}

/**
 * Arrowhead authentication info is `<PREFIX>//<value>`, or under the certificate policy a
 * base64 PEM client certificate. A principal's `mqtt` credentials in the --auth file are
 * whole strings: listing `SYSTEM//Name` lets that system declare itself, `IDENTITY-TOKEN//t`
 * accepts a token. An identity token may also be the principal's HTTP bearer token, so one
 * secret serves both interfaces. A certificate identifies the principal listing
 * `CN=<its common name>` under `certSubjects`, once it checks out against the trusted CAs.
 */
export function identifyCaller(identities: Identities, authentication: unknown, now: number): Caller {
  const auth = typeof authentication === 'string' ? authentication.trim() : '';
  const cert = certificateIn(auth);
  if (cert === 'invalid') return { receiver: '', problem: 'Invalid authentication key has been provided' };
  if (cert) {
    const { commonName, principal, problem } = identities.resolveCertificate(cert, now);
    return { principal, receiver: principal && !identities.open ? principal.name : commonName, problem: problem ?? '' };
  }
  const declared = auth.startsWith(SYSTEM) ? auth.slice(SYSTEM.length) : undefined;
  const token = declared !== undefined ? undefined : auth.startsWith(IDENTITY_TOKEN) ? auth.slice(IDENTITY_TOKEN.length) : auth;
  const principal = identities.resolve('mqtt', auth || undefined) ?? identities.resolve('tokens', token || undefined);
  // Open mode makes everyone the anonymous operator; a declared name still names the receiver.
  const receiver = principal && !identities.open ? principal.name : (declared ?? principal?.name ?? '');
  return { principal, receiver, problem: auth ? 'Invalid authentication info' : 'No authentication info has been provided' };
}

/** Some clients send the payload as a JSON string rather than as a JSON value. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    fail('invalid_request', `Could not parse payload: ${(e as Error).message}`);
  }
}

export function authenticated(caller: Caller): Principal {
  if (!caller.principal) fail('unauthenticated', caller.problem);
  return caller.principal;
}

const BY_KIND: Partial<Record<ErrorKind, [number, string]>> = {
  invalid_request: [400, 'INVALID_PARAMETER'],
  unauthenticated: [401, 'AUTH'],
  forbidden: [403, 'FORBIDDEN'],
  not_found: [404, 'DATA_NOT_FOUND'],
  locked: [423, 'LOCKED'],
  limit_exceeded: [413, 'INVALID_PARAMETER'],
  rate_limited: [429, 'UNAVAILABLE'],
};

/** Domain errors keep their message; anything unexpected is logged and answered as a bare 500. */
export function errorResponse(e: unknown, origin: string, log: Pick<Logger, 'error'>): ErrorResponse {
  const known = e instanceof DroverError ? BY_KIND[e.kind] : undefined;
  if (!known) log.error({ err: e, origin }, 'lock request failed');
  const [errorCode, exceptionType] = known ?? [500, 'INTERNAL_SERVER_ERROR'];
  return { errorMessage: known ? (e as Error).message : 'Internal server error', errorCode, exceptionType, origin };
}
