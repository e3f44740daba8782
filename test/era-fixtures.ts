// Fixtures of the Era mservice tests: zips written byte by byte (so that hostile ones can
// be made: absolute names, `..`, symlinks, lying sizes), the REST client, and the real
// processes of an mservice, found through /proc by the PROCESS_GUID in their environment.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createDeflateRaw, crc32, deflateRawSync } from 'node:zlib';
import { packagePath } from '../src/package-root.js';
import { waitFor } from './helpers.js';

export { waitFor };

// ------------------------------------------------------------------------------ zips

export interface ZipEntrySpec {
  name: string;
  data?: Buffer | string;
  /** unix mode with the type bits (default: a regular file, 0644; a directory when the name ends in /) */
  mode?: number;
  /** pre-compressed content (deflate), with its real size and CRC */
  deflated?: { data: Buffer; size: number; crc: number };
  /** a size to declare instead of the real one (a lying bomb) */
  declaredSize?: number;
}

export const FILE = 0o100644;
export const EXECUTABLE = 0o100755;
export const SYMLINK = 0o120777;

/** A zip archive (deflate, unix attributes) of the given entries. */
export function makeZip(entries: ZipEntrySpec[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const raw = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const content = e.deflated ?? { data: deflateRawSync(raw), size: raw.length, crc: crc32(raw) };
    const size = e.declaredSize ?? content.size;
    const mode = e.mode ?? (e.name.endsWith('/') ? 0o040755 : FILE);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt32LE(content.crc >>> 0, 14);
    local.writeUInt32LE(content.data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by: unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(content.crc >>> 0, 16);
    central.writeUInt32LE(content.data.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((mode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, content.data);
    centrals.push(central, name);
    offset += local.length + name.length + content.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** `bytes` zeros, deflated as a stream (never held whole in memory): a real bomb's content. */
export async function deflatedZeros(bytes: number): Promise<{ data: Buffer; size: number; crc: number }> {
  const chunk = Buffer.alloc(1024 * 1024);
  const deflate = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (b: Buffer) => out.push(b));
  const done = new Promise((resolve, reject) => deflate.on('end', resolve).on('error', reject));
  let crc = 0;
  for (let left = bytes; left > 0; left -= chunk.length) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    crc = crc32(piece, crc);
    if (!deflate.write(piece)) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  return { data: Buffer.concat(out), size: bytes, crc };
}

/** The test service: prints its working directory and each argument on a line of its own (into its log), then stays up. */
export const RUN_SH = `#!/bin/sh
echo "cwd=$(pwd)"
for a in "$@"; do echo "arg=$a"; done
exec sleep 1000
`;

/** A service that fails at once. */
export const CRASH_SH = `#!/bin/sh
echo "failing"
exit 3
`;

export const serviceZip = (script = RUN_SH) => makeZip([{ name: 'bin/' }, { name: 'bin/run.sh', data: script, mode: EXECUTABLE }, { name: 'README', data: 'hello' }]);

// ------------------------------------------------------------------------------ REST

export const MSERVICES = '/rest/v1/domain/mservices';

export interface Response {
  status: number;
  body: any;
  bytes: Buffer;
  headers: Headers;
}

export async function http(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (Buffer.isBuffer(body)) {
    init.body = new Uint8Array(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/zip';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(new URL(path, url), init);
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, body: json, bytes, headers: res.headers };
}

/** A request that must answer `status`; returns the JSON body. */
export async function expect(url: string, status: number, method: string, path: string, body?: unknown): Promise<any> {
  const r = await http(url, method, path, body);
  assert.equal(r.status, status, `${method} ${path}: HTTP ${r.status} ${r.bytes.toString('utf8').slice(0, 500)}`);
  return r.body;
}

/** BBS JSON call (for the actual LRPs). */
export async function actualLrps(url: string, guid: string): Promise<any[]> {
  const r = await http(url, 'POST', '/v1/actual_lrps/list', { process_guid: guid });
  assert.equal(r.status, 200);
  return ((r.body?.actual_lrps ?? []) as any[]).sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
}

// ------------------------------------------------------------------------------ processes

export interface Proc {
  pid: number;
  pgid: number;
  cellId: string;
  cmdline: string[];
}

/** Live (non-zombie) processes of an mservice (or any LRP): PROCESS_GUID=<guid> in their environment. */
export function processesOf(guid: string): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (!env.includes(`PROCESS_GUID=${guid}`)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z' || f[0] === 'X') continue;
      const cellId = env.find((kv) => kv.startsWith('CELL_ID='))?.slice('CELL_ID='.length) ?? '';
      out.push({ pid: Number(entry), pgid: Number(f[2]), cellId, cmdline: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The running instances of an mservice: one process group each, by cell. */
export function instancesOf(guid: string): { pgid: number; cellId: string }[] {
  const groups = new Map<number, string>();
  for (const p of processesOf(guid)) groups.set(p.pgid, p.cellId);
  return [...groups].map(([pgid, cellId]) => ({ pgid, cellId }));
}

/** SIGKILLs what is left of these mservices' processes, and waits until they are gone. */
export async function killProcessesOf(guids: Iterable<string>): Promise<void> {
  const list = [...guids];
  for (const g of list) {
    for (const p of processesOf(g)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  await waitFor(() => (list.every((g) => processesOf(g).length === 0) ? true : undefined), 'no processes left', 5000);
}


// ------------------------------------------------------------------------------ remote agent

export interface RemoteAgent {
  child: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

/** `drover agent` as a child process, resolved once it has started (and so heartbeated). */
export async function remoteAgent(url: string, args: string[]): Promise<RemoteAgent> {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // the child is not a test runner's child file
  const child = spawn(packagePath('bin', 'drover'), ['agent', '--api', url, '--log-level', 'info', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer) => {
      output.push(b.toString('utf8'));
      if (output.join('').includes('cell agent started')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then(() => reject(new Error(`drover agent exited early:\n${output.join('')}`)));
  });
  await started;
  return { child, output, exited };
}

export async function killAgent(a: RemoteAgent | undefined): Promise<void> {
  if (!a) return;
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
  await a.exited;
}
