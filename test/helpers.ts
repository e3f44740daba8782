// Shared test fixtures: real stores (a SQLite file, a PostgreSQL schema of its own).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import type { DesiredLrp } from '../src/model/lrp.js';

/** A desired LRP as a client sends it: `instances` of /bin/true. */
export const lrpInput = (guid: string, domain: string, instances: number): Partial<DesiredLrp> => ({
  processGuid: guid,
  domain,
  instances,
  action: { run: { path: '/bin/true', args: [], dir: '', env: [], user: '' } },
});

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

export interface LiveProcess {
  pid: number;
  ppid: number;
  pgid: number;
  env: Map<string, string>;
}

function liveProcessStat(pid: number): { ppid: number; pgid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // zombies have exited already; PID 1 here reaps orphans late
    return f[0] === 'Z' || f[0] === 'X' ? undefined : { ppid: Number(f[1]), pgid: Number(f[2]) };
  } catch {
    return undefined;
  }
}

/**
 * Live (non-zombie) processes whose environment has `name` set to a value starting with
 * `valuePrefix`. Tests mark instances by environment because it is inherited by everything
 * an instance forks or execs, where a command line is not.
 */
export function processesMarked(name: string, valuePrefix: string): LiveProcess[] {
  const out: LiveProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    if (!environ.includes(`${name}=${valuePrefix}`)) continue;
    const env = new Map<string, string>();
    for (const kv of environ.split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
    }
    if (!env.get(name)?.startsWith(valuePrefix)) continue;
    const stat = liveProcessStat(Number(entry));
    if (stat) out.push({ pid: Number(entry), ...stat, env });
  }
  return out;
}

/** Live (non-zombie) pids whose environment has `name=value` (or a value starting with it). */
export function processesWithEnv(name: string, value: string, prefix = false): number[] {
  return processesMarked(name, value)
    .filter((p) => prefix || p.env.get(name) === value)
    .map((p) => p.pid);
}

const OWN_PGID = liveProcessStat(process.pid)!.pgid;

/** SIGKILLs these processes' whole groups (never the test runner's own group). */
export function killProcessGroups(procs: { pid: number; pgid: number }[]): void {
  for (const p of procs) {
    try {
      if (p.pgid > 1 && p.pgid !== OWN_PGID) process.kill(-p.pgid, 'SIGKILL');
      else process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

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
