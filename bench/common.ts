// Shared helpers for the benchmarks: statistics, temp dirs, child servers, /proc scans,
// and marker-based cleanup (processes are found by a unique marker and killed by pid).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { ActualLrp } from '../src/model/lrp.js';
import type { Cell } from '../src/model/cell.js';

export { sleep };

/** The repository root (dist/bench/common.js -> ../..). */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

export const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)} ms`;
export const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `drover-bench-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A short random tag, usable in schema names and as a process marker. */
export function randomTag(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

/**
 * A `sleep` argument that is also a unique marker: GNU sleep adds up its arguments, so
 * `sleep 1000 0.000<digits>` sleeps 1000 s and its command line carries <digits>.
 */
export function sleepMarker(): string {
  return `0.000${Date.now() % 1e6}${Math.floor(Math.random() * 1e6)}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes (then throws). */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ------------------------------------------------------------------------------ /proc

export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

/** The command line of a process, NUL-separated args joined by spaces ('' if gone). */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** Live (non-zombie) processes whose command line contains `marker`. */
export function pidsWithMarker(marker: string): number[] {
  return listPids().filter((pid) => pid !== process.pid && cmdline(pid).includes(marker) && !isZombie(pid));
}

export function isZombie(pid: number): boolean {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** VmRSS of a process in KiB (NaN when gone). */
export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** A direct child of `parent` running `comm` (the name /proc/<pid>/stat shows), or undefined. */
export function childNamed(parent: number, comm: string): number | undefined {
  for (const pid of listPids()) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent && text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')) === comm) return pid;
    } catch {
      // gone
    }
  }
  return undefined;
}

/** CPU time (user + system) a process has used so far, in ms (from /proc/<pid>/stat, 10 ms ticks). */
export function cpuMs(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return NaN;
  }
}

/** SIGKILLs, one pid at a time, every process whose command line holds `marker`. */
export async function killByMarker(marker: string): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 20; round++) {
    const pids = pidsWithMarker(marker);
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
    await sleep(50);
  }
  return killed;
}

// ------------------------------------------------------------------ child processes

export interface ChildServer {
  child: ChildProcess;
  url: string;
  /** the text after `INFO ` on a line printed before READY ('' if none) */
  info: string;
  stop(): Promise<void>;
}

/**
 * Starts `node <script> ...args` and waits for a line `READY <url>` on its stdout.
 * stop() sends SIGTERM, waits up to 10 s, then SIGKILLs (by pid).
 */
export async function startChildServer(script: string, args: string[], timeoutMs = 30_000, env?: Record<string, string>): Promise<ChildServer> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT, env: { ...process.env, ...env } });
  let info = '';
  const url = await new Promise<string>((resolveUrl, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${script} did not get ready in ${timeoutMs} ms`)), timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      const i = /^INFO (.*)$/m.exec(buf);
      if (i) info = i[1]!;
      const m = /READY (\S+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited early with code ${code}`));
    });
  });
  child.stdout!.resume();
  return { child, url, info, stop: () => stopChild(child) };
}

export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** POSTs a JSON body and returns the parsed JSON answer. */
export async function postJson<T = Record<string, unknown>>(url: string, body: unknown): Promise<T> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await res.json()) as T;
}

/** A printable table row. */
export function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padEnd(widths[i] ?? 12)).join('  ');
}

export function header(title: string): void {
  console.log(`\n=== ${title} ===`);
}

/** A seeded cell: live for a day, with room for everything. */
export function roomyLiveCell(cellId: string, now: number): Cell {
  return {
    cellId,
    repAddress: '',
    zone: 'z1',
    site: '',
    sections: [],
    placementTags: [],
    capacity: { memoryMb: 1 << 20, diskMb: 1 << 20, containers: 1 << 20 },
    heartbeatAt: now,
    ttlMs: 24 * 3600_000,
  };
}

/** The `n`th seeded instance: RUNNING on `cellId`, with its own instance guid, port and address. */
export function runningActualLrp(processGuid: string, index: number, cellId: string, n: number, now: number): ActualLrp {
  return {
    actualLrpKey: { processGuid, index, domain: 'bench' },
    actualLrpInstanceKey: { instanceGuid: randomUUID(), cellId },
    actualLrpNetInfo: {
      address: '10.0.16.4',
      ports: [{ containerPort: 8080, hostPort: 61000 + (n % 4000) }],
      instanceAddress: `10.255.${(n >> 8) & 255}.${n & 255}`,
      preferredAddress: 'HOST',
    },
    crashCount: 0,
    crashReason: '',
    state: 'RUNNING',
    placementError: '',
    since: now,
    modificationTag: { epoch: randomUUID(), index: 2 },
    presence: 'ORDINARY',
    stopRequested: false,
    targetCellId: '',
  };
}
