// `drover status`: GET /status of one replica, or of each of several (--api URL1,URL2,...).

import type { ApiTarget } from './client.js';
import { table } from './table.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function fetchStatus(api: string, token?: string): Promise<Json> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    const res = await fetch(new URL('/status', api), { headers });
    if (!res.ok) return { api, error: `HTTP ${res.status}` };
    return { api, ...((await res.json()) as Json) };
  } catch (e) {
    return { api, error: `cannot reach: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}` };
  }
}

export async function statusCommand(opts: ApiTarget & { json?: boolean }): Promise<void> {
  const apis = opts.api.split(',').filter(Boolean);
  const all = await Promise.all(apis.map((api) => fetchStatus(api, opts.token)));
  if (opts.json) {
    console.log(JSON.stringify(apis.length === 1 ? all[0] : all, null, 2));
  } else {
    console.log(
      table(
        ['API', 'REPLICA', 'LEADING', 'EPOCH', 'LEADER', 'STORE', 'LIVE_CELLS'],
        all.map((s) =>
          s.error
            ? [s.api, '-', '-', '-', '-', '-', s.error]
            : [s.api, s.replicaId, s.leading ? 'yes' : 'no', s.epoch, s.leader ?? '-', s.store, (s.cells as Json[]).map((c) => c.cellId).join(',') || '-'],
        ),
      ),
    );
  }
  if (all.every((s) => s.error)) process.exitCode = 1;
}
