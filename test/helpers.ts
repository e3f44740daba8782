// Shared test fixtures: real stores (a SQLite file, a PostgreSQL schema of its own).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';

export const PG_URL = process.env.DROVER_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

export function tempDir(prefix = 'drover-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function uniqueSchema(): string {
  return `drover_t_${randomBytes(6).toString('hex')}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

export interface StoreFixture {
  name: 'sqlite' | 'postgres';
  /** the --store value, for tests that start a server process */
  spec: string;
  open(): Promise<Store>;
  cleanup(): Promise<void>;
}

/** Both store kinds, so a suite can run the same tests against each. */
export function storeFixtures(): StoreFixture[] {
  const dir = tempDir();
  const schema = uniqueSchema();
  return [
    {
      name: 'sqlite',
      spec: `sqlite:${join(dir, 'drover.db')}`,
      open: () => openStore(`sqlite:${join(dir, 'drover.db')}`, dir),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    },
    {
      name: 'postgres',
      spec: `${PG_URL}?schema=${schema}`,
      open: () => openStore(`${PG_URL}?schema=${schema}`, dir),
      cleanup: () => dropSchema(schema),
    },
  ];
}

/** Live (non-zombie) pids whose environment has `name=value` (or a value starting with it). */
export function processesWithEnv(name: string, value: string, prefix = false): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (!env.some((kv) => (prefix ? kv.startsWith(`${name}=${value}`) : kv === `${name}=${value}`))) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (!/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))) pids.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

/** Polls `probe` until it gives something other than undefined. */
/** Polls `probe` until it gives a value; a throwing probe is retried, its last error reported on timeout. */
export async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
