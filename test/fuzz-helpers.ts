// What the fuzz tests share: how many inputs a property gets (DROVER_FUZZ_RUNS), the store
// dump that must come out unchanged, the RSS bound, the figures each property prints, and
// generators of hostile values and of mutations of valid messages.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { startDrover, type DroverOptions, type RunningDrover } from '../src/drover.js';
import { tempDir } from './helpers.js';

/** Inputs per property: small by default so the whole suite stays within minutes; `npm run fuzz` asks for many. */
export const FUZZ_RUNS = Number(process.env.DROVER_FUZZ_RUNS ?? 20);
/** The resident set of the test process (client and Drover together) must stay under this. */
const RSS_BOUND_BYTES = Number(process.env.DROVER_FUZZ_RSS_MB ?? 1024) * 1024 * 1024;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

/** Every row of every table of the SQLite store in `dataDir`, in a stable order. */
export function storeDump(dataDir: string): string {
  const db = new Database(join(dataDir, 'drover.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
    return JSON.stringify(tables.map(({ name }) => [name, db.prepare(`SELECT * FROM "${name}" ORDER BY rowid`).all()]));
  } finally {
    db.close();
  }
}

/**
 * Runs a property over `arbitrary` with FUZZ_RUNS inputs, checks the RSS after each one and
 * prints the figures (inputs, time, peak RSS) as `fuzz <name>: ...`, read into docs/reliability.md.
 */
export async function fuzz<T>(name: string, arbitrary: fc.Arbitrary<T>, check: (input: T) => Promise<void>, runs = FUZZ_RUNS): Promise<void> {
  const started = Date.now();
  let inputs = 0;
  let peak = process.memoryUsage.rss();
  // deep inputs would overflow fast-check's own printing of a counterexample: print a summary
  const summarized = arbitrary.map((value) => ({ value, [fc.toStringMethod]: () => summary(value) }));
  await fc.assert(
    fc.asyncProperty(summarized, async ({ value: input }) => {
      inputs++;
      if (process.env.DROVER_FUZZ_TRACE) console.error(`fuzz ${name} #${inputs}: ${summary(input)}`);
      await check(input);
      const rss = process.memoryUsage.rss();
      peak = Math.max(peak, rss);
      assert.ok(rss < RSS_BOUND_BYTES, `RSS ${Math.round(rss / 2 ** 20)} MB is over the bound`);
    }),
    { numRuns: runs, endOnFailure: true },
  );
  console.log(`fuzz ${name}: ${inputs} inputs, ${Date.now() - started} ms, peak RSS ${Math.round(peak / 2 ** 20)} MB`);
}

function summary(value: unknown): string {
  try {
    return (JSON.stringify(value) ?? String(value)).slice(0, 500);
  } catch (e) {
    return `(not printable: ${(e as Error).message})`;
  }
}

/** Nothing reachable from a plain object gained a property (prototype pollution). */
export function assertNoPollution(): void {
  assert.equal(({} as Json).polluted, undefined, 'Object.prototype was polluted');
}

// ------------------------------------------------------------------------------ hostile values

/** `depth` arrays or objects nested in one another. */
export function nested(depth: number, kind: 'array' | 'object', leaf: Json = 1): Json {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { a: v };
  return v;
}

/** Strings a decoder should not trust: control characters, traversal, huge, odd unicode, format specifiers. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constantFrom('', '\u0000', '../../../../etc/passwd', '/etc/passwd', '%s%n%x', "'; DROP TABLE desired_lrps; --", '\ud800', '\u202e', '<!DOCTYPE x>', '!!python/object', '${jndi:x}'),
  fc.integer({ min: 1_000, max: 300_000 }).map((n) => 'x'.repeat(n)),
);

/** Any JSON-ish value, from wrong types through deep nesting to prototype-polluting keys. */
export const hostileValue: fc.Arbitrary<Json> = fc.oneof(
  hostileString,
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom(null, true, false, 0, -1, -0, 1.5, 2 ** 31, 2 ** 53 + 2, -(2 ** 63), 1e308, [], {}),
  fc.tuple(fc.integer({ min: 50, max: 2_000 }), fc.constantFrom('array' as const, 'object' as const)).map(([d, k]) => nested(d, k)),
  fc.constant(JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 1}}}')),
  fc.integer({ min: 1_000, max: 50_000 }).map((n) => Array.from({ length: n }, (_, i) => i)),
);

type Path = (string | number)[];

/** The paths of every node of a JSON value (the root excluded). */
function pathsOf(v: Json, prefix: Path = []): Path[] {
  if (v === null || typeof v !== 'object') return [];
  const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => [[...prefix, k], ...pathsOf(v[k], [...prefix, k])]);
}

function setAt(root: Json, path: Path, value: Json): void {
  let node = root;
  for (const k of path.slice(0, -1)) node = node[k];
  const last = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else node[last] = value;
}

/**
 * A valid message with one to three of its nodes replaced by hostile values or removed; then
 * `spoil` (when given) breaks it for sure, so the result must be refused.
 */
export function mutationOf(valid: Json, spoil?: fc.Arbitrary<(m: Json) => void>): fc.Arbitrary<Json> {
  const paths = pathsOf(valid);
  if (!paths.length) return hostileValue;
  const change = fc.tuple(fc.constantFrom(...paths), fc.option(hostileValue, { nil: undefined, freq: 4 }));
  return fc.tuple(fc.array(change, { minLength: 1, maxLength: 3 }), spoil ?? fc.constant(() => {})).map(([changes, breakIt]) => {
    const m = structuredClone(valid);
    const replaced: Path[] = [];
    for (const [path, value] of changes) {
      // not into a value an earlier change put there: deep ones would nest deeper than JSON.stringify goes
      if (replaced.some((r) => r.length <= path.length && r.every((k, i) => path[i] === k))) continue;
      replaced.push(path);
      // an earlier change may have removed the parent
      try {
        // a copy: generated constants are shared between inputs and must not be changed in place
        setAt(m, path, structuredClone(value));
      } catch {
        // nothing to change there any more
      }
    }
    breakIt(m);
    return m;
  });
}

/** A spoiler that sets `path` of a message to a value it cannot take. */
export function spoiling(path: Path, wrong: fc.Arbitrary<Json>): fc.Arbitrary<(m: Json) => void> {
  return wrong.map((w) => (m: Json) => {
    let node = m;
    for (const k of path.slice(0, -1)) {
      if (node[k] === null || typeof node[k] !== 'object') node[k] = {};
      node = node[k];
    }
    node[path[path.length - 1]!] = w;
  });
}

/** Raw bytes: random, and a valid body cut short or with flipped bits. */
export function mangledBytes(valid: Buffer): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
    fc.nat(Math.max(0, valid.length - 1)).map((n) => valid.subarray(0, n)),
    fc.array(fc.tuple(fc.nat(Math.max(0, valid.length - 1)), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }).map((flips) => {
      const b = Buffer.from(valid);
      for (const [at, bits] of flips) b[at] = b[at]! ^ bits;
      return b;
    }),
  );
}

// ------------------------------------------------------------------------------ a Drover to fuzz

/** The fuzzer's credentials on every interface: an owner, so agent-only routes refuse it. */
export const FUZZER = { name: 'fuzzer', token: 'fuzz-owner-token', mqtt: 'SYSTEM//Fuzzer', appId: 'fuzz-app' };
/** Another owner: the rate limit of one principal must not slow it down. */
export const BYSTANDER = { name: 'bystander', token: 'bystander-token', mqtt: 'SYSTEM//Bystander', appId: 'bystander-app' };

/** Limits tight enough to reach in a test: 4 KiB bodies and messages, 1 request/s after a burst of 3, 3 instances. */
export const TIGHT_LIMITS = { bodyLimit: 4096, messageLimit: 4096, rateLimit: 1, rateBurst: 3, maxInstances: 3 };

/** An --auth file naming the fuzzer (and, for GENI, its user URN). */
export function fuzzAuthFile(dir: string, geniUrns: { fuzzer?: string; bystander?: string } = {}): string {
  const path = join(dir, 'auth.yaml');
  const entry = (who: typeof FUZZER, urn?: string) => `  - name: ${who.name}
    roles: [owner]
    tokens: [${who.token}]
    mqtt: ['${who.mqtt}']
    amqpAppIds: [${who.appId}]
${urn ? `    geniUrns: ['${urn}']\n` : ''}`;
  writeFileSync(path, `principals:\n${entry(FUZZER, geniUrns.fuzzer)}${entry(BYSTANDER, geniUrns.bystander)}`);
  return path;
}

/** A Drover without an agent (nothing but requests writes to its store), MQTT off unless asked. */
export async function startFuzzDrover(options: Partial<DroverOptions> = {}, geniUrns?: { fuzzer?: string; bystander?: string }): Promise<{ drover: RunningDrover; dataDir: string }> {
  const dataDir = tempDir('drover-fuzz-');
  const drover = await startDrover({
    dataDir,
    auth: fuzzAuthFile(dataDir, geniUrns),
    http: '127.0.0.1:0',
    agent: false,
    mqtt: 'none',
    logLevel: 'silent',
    convergeIntervalMs: 3_600_000,
    ...options,
  });
  return { drover, dataDir };
}

/** The store as it was after the last accepted input: every refused one must leave it so. */
export class StoreWatch {
  private last: string;

  constructor(private readonly dataDir: string) {
    this.last = storeDump(dataDir);
  }

  unchanged(what: string): void {
    const now = storeDump(this.dataDir);
    if (now !== this.last) assert.fail(`a refused input changed the store: ${what.slice(0, 300)}`);
  }

  /** After an accepted input: waits until what it set going is written, then takes that as the new state. */
  async settle(): Promise<void> {
    for (let previous = storeDump(this.dataDir); ; ) {
      await sleep(300);
      this.last = storeDump(this.dataDir);
      if (this.last === previous) return;
      previous = this.last;
    }
  }
}
