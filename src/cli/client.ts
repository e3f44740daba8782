// A small BBS JSON client for the CLI (and the remote agent).

import { DroverError } from '../model/errors.js';

export interface ApiTarget {
  api: string;
  token?: string;
}

export class BbsCallError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(`${type}: ${message}`);
  }
}

/** POSTs one BBS JSON request; a response carrying `error` becomes a BbsCallError. */
export async function bbsCall<T = Record<string, unknown>>(target: ApiTarget, path: string, body: object = {}): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  let res: Response;
  try {
    res = await fetch(new URL(path, target.api), { method: 'POST', headers, body: JSON.stringify(body) });
  } catch (e) {
    throw new DroverError('internal', `cannot reach ${target.api}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
  }
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text || '{}');
  } catch {
    throw new BbsCallError('InvalidResponse', `HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  const error = parsed.error as { type?: string; message?: string } | undefined;
  if (error) throw new BbsCallError(error.type ?? 'UnknownError', error.message ?? `HTTP ${res.status}`);
  if (!res.ok) throw new BbsCallError('UnknownError', `HTTP ${res.status}`);
  return parsed as T;
}
