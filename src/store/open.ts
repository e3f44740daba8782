// Chooses the store from a `--store` value: `sqlite:PATH` or `postgres://...`.

import { join } from 'node:path';
import type { Store } from './store.js';
import { openSqliteStore } from './sqlite/open.js';
import { openPostgresStore } from './postgres/open.js';

export async function openStore(spec: string | undefined, dataDir: string): Promise<Store> {
  const store = await connect(spec ?? `sqlite:${join(dataDir, 'drover.db')}`);
  await store.migrate();
  return store;
}

function connect(spec: string): Promise<Store> | Store {
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://')) return openPostgresStore(spec);
  if (spec.startsWith('sqlite:')) return openSqliteStore(spec.slice('sqlite:'.length));
  throw new Error(`--store must be sqlite:PATH or postgres://..., got ${spec}`);
}
