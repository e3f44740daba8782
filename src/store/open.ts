// Chooses the store from a `--store` value: `sqlite:PATH` or `postgres://...`.

import { join } from 'node:path';
import type { Store } from './store.js';
import { openSqliteStore } from './sqlite/open.js';

export async function openStore(spec: string | undefined, dataDir: string): Promise<Store> {
  const store = await connect(spec ?? `sqlite:${join(dataDir, 'drover.db')}`);
  await store.migrate();
  return store;
}

async function connect(spec: string): Promise<Store> {
  // The PostgreSQL driver loads only for a PostgreSQL store: the default (SQLite) never needs it.
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://')) return (await import('./postgres/open.js')).openPostgresStore(spec);
  if (spec.startsWith('sqlite:')) return openSqliteStore(spec.slice('sqlite:'.length));
  throw new Error(`--store must be sqlite:PATH or postgres://..., got ${spec}`);
}
